#!/usr/bin/env bash
# Everything a fresh Debian 12 machine needs to build and test swarmd: Debian packages (as root),
# npm dependencies (npm ci) and the build. Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the project needs at build, test and run time.
APT_PACKAGES=(
  runc conmon busybox-static iproute2 iptables nftables conntrack docker-registry etcd-server etcd-client
  protobuf-compiler skopeo umoci util-linux ca-certificates attr apache2-utils openssl curl procps iperf3
  prometheus   # promtool: checks the text swarmd --metrics-addr serves
  chromium     # headless, driven by playwright-core: the test of swarmctl web
  docker.io    # dockerd for the Docker interop tests (a private one each run, started by the tests)
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
    echo "setup: run again as root (sudo bash scripts/setup.sh)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # docker.io's postinst starts a system dockerd where it can, whose default options turn the
  # FORWARD policy to DROP (breaking the network tests): no service starts during the install.
  own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  apt_rc=0
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || apt_rc=$?
  [ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d
  [ "$apt_rc" -eq 0 ] || exit "$apt_rc"
  # ...nor at the next boot (the tests start a private dockerd of their own when they need one).
  if [[ " ${missing[*]} " == *" docker.io "* ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now docker.socket docker.service >/dev/null 2>&1 || true
  fi
fi

# npm dependencies: a clean install when the lock changed since the last one (or under CI).
if [ "${CI:-}" = "true" ] || [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

echo "setup: build"
npm run --silent build

# swarmctl on the PATH: /usr/local/bin/swarmctl links to this checkout's build (as `npm link`
# would, without a global install). Not root: say how to do it.
if [ "$(id -u)" -eq 0 ]; then
  ln -sfn "$PWD/packages/cli/dist/src/swarmctl.cjs" /usr/local/bin/swarmctl
else
  echo "setup: swarmctl is not on the PATH (not root): sudo ln -sfn $PWD/packages/cli/dist/src/swarmctl.cjs /usr/local/bin/swarmctl" >&2
fi

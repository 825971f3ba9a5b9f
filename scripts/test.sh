#!/usr/bin/env bash
# Sets up (scripts/setup.sh), then runs every test with ava and ends with one line
# `N passed, N failed, N skipped` counted from the run. Exits non-zero when anything failed.
# Tests that need root, runc or network namespaces are tagged [root,...]; as non-root they are
# skipped locally (never under CI=true, where they must run).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${SWARM_SETUP_DONE:-}" != 1 ] && ! bash scripts/setup.sh; then
  echo "test: setup failed"
  echo "0 passed, 1 failed"
  exit 1
fi
# Local clusters an interrupted earlier run left behind (their root under the temp dir, no process
# of theirs alive) hold subnets and names this run's tests ask for: take them down first.
tmp="${TMPDIR:-/tmp}"
for root in "$tmp"/swl-*/; do
  [ -d "$root" ] || continue
  pgrep -f -- "$root" >/dev/null && continue
  for state in "$root"*/cluster.json; do
    [ -f "$state" ] || continue
    name="$(basename "$(dirname "$state")")"
    echo "test: taking down local cluster $name left by an earlier run ($root)"
    SWARMD_LOCAL_ROOT="$root" SWARMCTL_CONTEXT="${root}ctx.json" node packages/cli/dist/src/swarmctl.cjs local down --name "$name" || true
  done
  rm -rf "$root"
done
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
npx ava --tap "$@" 2>&1 | tee "$log"
ava_rc=${PIPESTATUS[0]}
count() { sed -n "s/^# $1 \([0-9][0-9]*\)$/\1/p" "$log" | tail -n 1; }
pass=$(count pass); fail=$(count fail); skip=$(count skip)
pass=${pass:-0}; fail=${fail:-0}; skip=${skip:-0}
# ava exits non-zero on a crash or timeout it may not count as a test: count that as a failure.
if [ "$ava_rc" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; fi
echo
echo "${pass} passed, ${fail} failed, ${skip} skipped"
[ "$fail" -eq 0 ] && [ "$ava_rc" -eq 0 ]

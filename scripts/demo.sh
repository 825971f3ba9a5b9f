#!/usr/bin/env bash
# The main job: a local multi-host cluster on this machine. Installs what is missing, builds,
# brings up 3 managers and 2 workers (each a network namespace on an underlay bridge running its
# own swarmd), with a local registry holding a demo image, and shows `swarmctl node ls`.
# Run as root. Remove it all with: swarmctl local down --name demo
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then echo "demo: run as root (network namespaces, runc, overlayfs)" >&2; exit 1; fi
bash scripts/setup.sh

swarmctl() { node packages/cli/dist/src/main.js "$@"; }
NAME=${DEMO_NAME:-demo}

# A re-run starts from scratch.
swarmctl local down --name "$NAME" >/dev/null 2>&1 || true
swarmctl local up --name "$NAME" --managers "${DEMO_MANAGERS:-3}" --workers "${DEMO_WORKERS:-2}"
echo
echo "demo: the cluster is up (swarmctl node ls above). Try:"
echo "  alias swarmctl='node $PWD/packages/cli/dist/src/main.js'"
echo "  swarmctl node ls; swarmctl node inspect ${NAME}-w1; swarmctl local ls"
echo "  swarmctl local down --name ${NAME}      # removes everything it made"

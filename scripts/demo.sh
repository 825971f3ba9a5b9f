#!/usr/bin/env bash
# The main job: a local multi-host cluster on this machine running a demo service. Installs what
# is missing, builds, brings up 3 managers and 2 workers (each a network namespace on an underlay
# bridge running its own swarmd), with a local registry holding a demo image (busybox httpd), then
# makes an overlay network, deploys the demo service (3 replicas) on it with port 8080 published
# through the routing mesh, asks every host for the page (hosts without a replica answer too),
# and runs a second service that finds the first by DNS over the overlay.
# Run as root. Remove it all with: swarmctl local down --name demo
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then echo "demo: run as root (network namespaces, runc, overlayfs)" >&2; exit 1; fi
bash scripts/setup.sh

# setup.sh put swarmctl on the PATH (/usr/local/bin/swarmctl → this checkout's build).
command -v swarmctl >/dev/null || { echo "demo: swarmctl is not on the PATH after setup" >&2; exit 1; }
NAME=${DEMO_NAME:-demo}

# A re-run starts from scratch.
swarmctl local down --name "$NAME" >/dev/null 2>&1 || true
swarmctl local up --name "$NAME" --managers "${DEMO_MANAGERS:-3}" --workers "${DEMO_WORKERS:-2}"

state=$(swarmctl local ls --format json)
field() { node -e "const c=JSON.parse(process.argv[1]).find(c=>c.name===process.argv[2]); console.log($1)" "$state" "$NAME"; }
registry=$(field 'c.registry.addr')
addrs=$(field 'c.hosts.map(h=>h.addr).join(" ")')

echo
echo "demo: an overlay network, the demo service on it (3 replicas, port 8080 through the routing mesh)"
swarmctl network create backend
swarmctl service create --name web --replicas 3 --network backend --publish 8080:8080 "$registry/demo/web:latest"
swarmctl service create --name hello --replicas 2 --network backend "$registry/demo/web:latest" -- \
  sh -c 'while true; do echo "hello from $(hostname): web = $(nslookup web | sed -n "s/^Address: //p" | tail -1), tasks.web = $(nslookup tasks.web | sed -n "s/^Address: //p" | sort | tr "\n" " ")"; sleep 2; done'
echo
swarmctl network ls
echo
swarmctl service ls
echo
swarmctl service ps web
echo
echo "demo: every host answers on 8080, with or without a replica of web (the routing mesh)"
for a in $addrs; do printf '%s:8080 -> ' "$a"; curl -s -m 5 "http://$a:8080/" || echo "(no answer)"; done
echo
sleep 3
echo "demo: hello finds web by name over the overlay network (its VIP, and every task with tasks.web)"
swarmctl service logs --tail 4 hello
echo
echo "demo: the cluster is up. Try:"
echo "  swarmctl service scale web=6; swarmctl service logs -f hello   # tasks.web follows at once"
echo "  swarmctl service scale hello=10; swarmctl service ps hello"
echo "  swarmctl node update --availability drain ${NAME}-w1; swarmctl service ps hello"
echo "  swarmctl local stop --name ${NAME} --kill w2; swarmctl service ps hello   # a host dies (local start --name ${NAME} w2)"
echo "  swarmctl local down --name ${NAME}      # removes everything it made"

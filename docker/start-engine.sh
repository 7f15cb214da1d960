#!/usr/bin/env bash
# Starts dockerd in the background when no Docker engine answers (for machines without an init system that
# runs the docker service, such as CI containers); does nothing when one does. Needs root to start it.
#   docker/start-engine.sh [LOG]              # default log: /tmp/elm-docker-build/dockerd.log
set -euo pipefail

DOCKER=${DOCKER:-docker}
LOG=${1:-${ELM_DOCKER_BUILD:-/tmp/elm-docker-build}/dockerd.log}
"$DOCKER" info >/dev/null 2>&1 && exit 0
command -v dockerd >/dev/null || { echo "start-engine: no Docker engine answers and dockerd is not installed: apt-get install docker.io" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "start-engine: no Docker engine answers; start it as root (dockerd, or systemctl start docker)" >&2; exit 1; }
mkdir -p "$(dirname "$LOG")"
nohup dockerd >"$LOG" 2>&1 &
for _ in $(seq 60); do
    "$DOCKER" info >/dev/null 2>&1 && { echo "dockerd started (pid $!, log $LOG)"; exit 0; }
    sleep 1
done
echo "start-engine: dockerd did not answer within 60 s: see $LOG" >&2
exit 1

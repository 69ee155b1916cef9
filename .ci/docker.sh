#!/usr/bin/env bash
# A private Docker daemon for the container tests: no bridge, no iptables (every container
# runs on the host network and talks to loopback only), its own data root, so the images it
# builds stay cached between runs on this machine.
#
#   .ci/docker.sh start    # start it unless it runs; prints nothing when it was running already
#   .ci/docker.sh stop     # stop it, only if `start` started it (make test stops what it starts)
#   .ci/docker.sh host     # the DOCKER_HOST to use
#
# KTX_DOCKER_ROOT (default /var/lib/ktx-docker) holds data, exec root, socket, pid and log.
set -euo pipefail

ROOT="${KTX_DOCKER_ROOT:-/var/lib/ktx-docker}"
SOCK="unix://${ROOT}/docker.sock"
PIDFILE="${ROOT}/dockerd.pid"
OURS="${ROOT}/started-by-make"
DOCKER="${KTX_DOCKER:-/usr/bin/docker}"

running() { [ -f "${PIDFILE}" ] && kill -0 "$(cat "${PIDFILE}")" 2>/dev/null; }

case "${1:-}" in
  host)
    echo "${SOCK}"
    ;;
  start)
    if running; then exit 0; fi
    command -v dockerd >/dev/null || { echo "docker.sh: dockerd missing (apt-get install docker.io)" >&2; exit 1; }
    mkdir -p "${ROOT}/data" "${ROOT}/exec"
    rm -f "${ROOT}/docker.sock"
    nohup dockerd --bridge=none --iptables=false --ip6tables=false \
      --data-root "${ROOT}/data" --exec-root "${ROOT}/exec" --pidfile "${PIDFILE}" \
      -H "${SOCK}" >"${ROOT}/dockerd.log" 2>&1 &
    touch "${OURS}"
    for _ in $(seq 600); do
      if DOCKER_HOST="${SOCK}" "${DOCKER}" info >/dev/null 2>&1; then exit 0; fi
      sleep 0.1
    done
    echo "docker.sh: dockerd did not answer within 60 s; its log:" >&2
    tail -20 "${ROOT}/dockerd.log" >&2
    exit 1
    ;;
  stop)
    [ -f "${OURS}" ] || exit 0
    rm -f "${OURS}"
    running || exit 0
    # containers left by a crashed test would keep dockerd waiting for them
    DOCKER_HOST="${SOCK}" "${DOCKER}" ps -aq | xargs -r env DOCKER_HOST="${SOCK}" "${DOCKER}" rm -f >/dev/null 2>&1 || true
    pid="$(cat "${PIDFILE}")"
    kill -TERM "${pid}"
    for _ in $(seq 600); do
      kill -0 "${pid}" 2>/dev/null || exit 0
      sleep 0.1
    done
    echo "docker.sh: dockerd ${pid} still running after 60 s" >&2
    exit 1
    ;;
  *)
    echo "usage: $0 start|stop|host" >&2
    exit 2
    ;;
esac

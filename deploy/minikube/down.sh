#!/usr/bin/env bash
# Stop the ktx Minikube profile (state kept), or delete it with --delete.
# The laptop's data directory (mounted at /mnt/data) is never touched.
set -euo pipefail

PROFILE="${KTX_MINIKUBE_PROFILE:-ktx}"

if ! command -v minikube >/dev/null 2>&1; then
  echo "error: 'minikube' is not on PATH" >&2
  exit 1
fi

case "${1:-}" in
  --delete)
    minikube delete -p "${PROFILE}"
    ;;
  "")
    minikube stop -p "${PROFILE}"
    ;;
  *)
    echo "usage: $0 [--delete]" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# `make minikube-dev`: Dagster on the laptop, every partition step a Job in Minikube.
#
# Loads the env file deploy/minikube/up.sh wrote, keeps a port-forward to the cluster's
# PostgreSQL running in the background (stopped when this script ends), writes the Hello
# World sample inputs, registers the partitions of both code locations and starts
# `dagster dev` on 127.0.0.1 (expose it through an SSH tunnel, never on 0.0.0.0).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ENV_FILE="${KTX_MINIKUBE_DAGSTER_HOME:-${REPO_ROOT}/.dagster_home/minikube}/env.sh"
if [ ! -f "${ENV_FILE}" ]; then
  echo "error: ${ENV_FILE} is missing: run make minikube-up first" >&2
  exit 1
fi
# shellcheck source=/dev/null
source "${ENV_FILE}"

kubectl --context "${KTX_KUBE_CONTEXT}" -n "${KTX_K8S_NAMESPACE}" port-forward svc/ktx-postgres \
  "${DAGSTER_PG_PORT}:5432" >"${DAGSTER_HOME}/port-forward.log" 2>&1 &
FORWARD=$!
trap 'kill "${FORWARD}" 2>/dev/null || true' EXIT
for _ in $(seq 150); do
  if (exec 3<>"/dev/tcp/127.0.0.1/${DAGSTER_PG_PORT}") 2>/dev/null; then break; fi
  kill -0 "${FORWARD}" 2>/dev/null || { cat "${DAGSTER_HOME}/port-forward.log" >&2; exit 1; }
  sleep 0.2
done

cd "${REPO_ROOT}"
.venv/bin/python -m assets.samples write
.venv/bin/ktx sync -w workspace.yaml
.venv/bin/dagster dev -h 127.0.0.1 -w workspace.yaml

#!/usr/bin/env bash
# Start a local Kubernetes for ktx-dagster and print how to point `dagster dev` at it.
#
#   deploy/minikube/up.sh            # start (or re-use) profile "ktx", build the image, apply
#   KTX_MINIKUBE_CPUS=6 KTX_MINIKUBE_MEMORY=12288mb deploy/minikube/up.sh
#
# What it does: minikube start with <repo>/data mounted at /mnt/data (owned by the image's
# uid 10001), metrics-server, the ktx-dagster image built inside Minikube, the namespace,
# service accounts + a Role limited to jobs/pods/pods/log, PostgreSQL for the Dagster
# instance, the instance ConfigMaps and a generated password Secret. Idempotent.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PROFILE="${KTX_MINIKUBE_PROFILE:-ktx}"
CPUS="${KTX_MINIKUBE_CPUS:-4}"
MEMORY="${KTX_MINIKUBE_MEMORY:-8192mb}"
NAMESPACE="ktx" # the manifests are written for this namespace
IMAGE="${KTX_IMAGE:-ktx-dagster:dev}"
DATA_DIR="${KTX_HOST_DATA_DIR:-${REPO_ROOT}/data}"
PG_LOCAL_PORT="${KTX_PG_LOCAL_PORT:-15432}"
LOCAL_DAGSTER_HOME="${KTX_MINIKUBE_DAGSTER_HOME:-${REPO_ROOT}/.dagster_home/minikube}"
MANIFESTS="${REPO_ROOT}/deploy/minikube/manifests"

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "error: '$1' is not on PATH. $2" >&2
    exit 1
  fi
}
need minikube "Install it: https://minikube.sigs.k8s.io/docs/start/"
need kubectl "Install it: https://kubernetes.io/docs/tasks/tools/"
need openssl "It generates the PostgreSQL password."

kc() { kubectl --context "${PROFILE}" "$@"; }

mkdir -p "${DATA_DIR}" "${LOCAL_DAGSTER_HOME}"

echo "==> minikube start (profile ${PROFILE}, ${CPUS} CPUs, ${MEMORY}, ${DATA_DIR} -> /mnt/data)"
minikube start -p "${PROFILE}" \
  --cpus="${CPUS}" --memory="${MEMORY}" \
  --mount --mount-string="${DATA_DIR}:/mnt/data" \
  --mount-uid=10001 --mount-gid=10001 \
  --extra-config=kubelet.eviction-hard="memory.available<512Mi,nodefs.available<10%" \
  --extra-config=kubelet.system-reserved="memory=512Mi"
minikube -p "${PROFILE}" addons enable metrics-server

echo "==> building ${IMAGE} inside Minikube"
minikube -p "${PROFILE}" image build -t "${IMAGE}" -f deploy/Dockerfile "${REPO_ROOT}"

echo "==> applying manifests"
kc apply -f "${MANIFESTS}/00-namespace.yaml"
if ! kc -n "${NAMESPACE}" get secret ktx-postgres >/dev/null 2>&1; then
  kc -n "${NAMESPACE}" create secret generic ktx-postgres \
    --from-literal=postgresql-password="$(openssl rand -hex 24)"
  kc -n "${NAMESPACE}" label secret ktx-postgres app.kubernetes.io/part-of=ktx-dagster
fi
kc apply -f "${MANIFESTS}"
kc -n "${NAMESPACE}" rollout status statefulset/ktx-postgres --timeout=300s

cp "${REPO_ROOT}/deploy/minikube/dagster.yaml" "${LOCAL_DAGSTER_HOME}/dagster.yaml"

cat <<INSTRUCTIONS

Minikube is ready. In one terminal keep PostgreSQL reachable from the laptop:

  kubectl --context ${PROFILE} -n ${NAMESPACE} port-forward svc/ktx-postgres ${PG_LOCAL_PORT}:5432

In another, run Dagster on the laptop; every partition step becomes a Job in Minikube:

  export KTX_DEPLOYMENT=minikube
  export KTX_KUBE_CONTEXT=${PROFILE}
  export KTX_K8S_NAMESPACE=${NAMESPACE}
  export KTX_IMAGE=${IMAGE}
  export KTX_DATA_DIR=${DATA_DIR}
  export DAGSTER_HOME=${LOCAL_DAGSTER_HOME}
  export DAGSTER_PG_HOST=127.0.0.1 DAGSTER_PG_PORT=${PG_LOCAL_PORT} DAGSTER_PG_USER=dagster DAGSTER_PG_DB=dagster
  export DAGSTER_PG_PASSWORD="\$(kubectl --context ${PROFILE} -n ${NAMESPACE} get secret ktx-postgres -o jsonpath='{.data.postgresql-password}' | base64 -d)"
  cd ${REPO_ROOT} && .venv/bin/dagster dev -w workspace.yaml

Watch the steps:  kubectl --context ${PROFILE} -n ${NAMESPACE} get jobs,pods -l ktx/transformation --watch
After code changes rebuild the image:  minikube -p ${PROFILE} image build -t ${IMAGE} -f deploy/Dockerfile ${REPO_ROOT}
Stop: deploy/minikube/down.sh (add --delete to remove the cluster; ${DATA_DIR} stays).
INSTRUCTIONS

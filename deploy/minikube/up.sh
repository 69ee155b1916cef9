#!/usr/bin/env bash
# Start a local Kubernetes for ktx-dagster and print how to point `dagster dev` at it.
#
#   deploy/minikube/up.sh            # start (or re-use) profile "ktx", build the image, apply
#   KTX_MINIKUBE_CPUS=6 KTX_MINIKUBE_MEMORY=12288mb deploy/minikube/up.sh
#
# What it does: minikube start with <repo>/data mounted at /mnt/data and Calico as the CNI
# (so the step NetworkPolicy is enforced), metrics-server, the ktx-dagster image built inside
# Minikube, the namespace, service accounts + a Role limited to what dagster-k8s calls
# (jobs, pods, pods/log, events), PostgreSQL for the Dagster instance, the instance
# ConfigMaps and a generated password Secret; then the env file `make minikube-dev` loads.
# Idempotent.
#
# The data mount: with the Docker (or Podman) driver `--mount` is a plain bind mount that
# keeps the laptop's owner (--mount-uid/gid only apply to 9p mounts, and fsGroup never to a
# hostPath), so the step pods run as the owner of the data directory (KTX_RUN_AS_USER/GROUP
# in the env file). A directory owned by root is handed to uid 10001, the image's user.
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
ENV_FILE="${LOCAL_DAGSTER_HOME}/env.sh"

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
if [ "$(stat -c %u "${DATA_DIR}")" = "0" ]; then
  echo "==> ${DATA_DIR} belongs to root: handing it to uid 10001 (the image's user; pods never run as root)"
  chown -R 10001:10001 "${DATA_DIR}"
fi
RUN_AS_USER="$(stat -c %u "${DATA_DIR}")"
RUN_AS_GROUP="$(stat -c %g "${DATA_DIR}")"

echo "==> minikube start (profile ${PROFILE}, ${CPUS} CPUs, ${MEMORY}, ${DATA_DIR} -> /mnt/data)"
minikube start -p "${PROFILE}" \
  --cpus="${CPUS}" --memory="${MEMORY}" \
  --cni=calico \
  --mount --mount-string="${DATA_DIR}:/mnt/data" \
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

# What `make minikube-dev` (deploy/minikube/dev.sh) loads; source it to use the cluster from
# any shell (the password is read from the Secret when the file is sourced, never stored).
cat >"${ENV_FILE}" <<ENV
export KTX_DEPLOYMENT=minikube
export KTX_KUBE_CONTEXT=${PROFILE}
export KTX_K8S_NAMESPACE=${NAMESPACE}
export KTX_IMAGE=${IMAGE}
export KTX_DATA_DIR=${DATA_DIR}
export KTX_COMPUTE_LOGS_DIR=${DATA_DIR}/.dagster/compute_logs
export KTX_RUN_AS_USER=${RUN_AS_USER} KTX_RUN_AS_GROUP=${RUN_AS_GROUP}
export DAGSTER_HOME=${LOCAL_DAGSTER_HOME}
export DAGSTER_PG_HOST=127.0.0.1 DAGSTER_PG_PORT=${PG_LOCAL_PORT} DAGSTER_PG_USER=dagster DAGSTER_PG_DB=dagster
export DAGSTER_PG_PASSWORD="\$(kubectl --context ${PROFILE} -n ${NAMESPACE} get secret ktx-postgres -o jsonpath='{.data.postgresql-password}' | base64 -d)"
ENV

cat <<INSTRUCTIONS

Minikube is ready. Run Dagster on the laptop, every partition step a Job in Minikube:

  make minikube-dev

It loads ${ENV_FILE}, keeps a port-forward to PostgreSQL running in the background, writes
the sample inputs, registers their partitions and starts dagster dev on http://127.0.0.1:3000.

Watch the steps:  kubectl --context ${PROFILE} -n ${NAMESPACE} get jobs,pods -l ktx/transformation --watch
After code changes rebuild the image:  make minikube-image
Stop: make minikube-down (deploy/minikube/down.sh --delete removes the cluster; ${DATA_DIR} stays).
INSTRUCTIONS

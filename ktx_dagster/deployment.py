"""Where steps run and where data lives, chosen by `KTX_DEPLOYMENT`: the defaults that
`definitions_for()` wires into a code location.

local (default): `ktx_dagster.executors.local`. A run that is a chain of steps (one
partition: the task, then its checks) executes in the run's own process; a run whose steps
can run side by side gets Dagster's multiprocess executor, at most `KTX_MAX_CONCURRENT` step
processes at once (default: the number of CPUs). `KTX_LOCAL_EXECUTOR=multiprocess|in_process`
forces either. Data under `KTX_DATA_DIR` (default ./data).
minikube / eks: every step is its own Kubernetes Job with the transformation's requests and
limits (`ktx_dagster.executors.k8s`; settings from env in `K8sSettings.from_env`).
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from ktx_dagster.io_manager import data_resources

DEPLOYMENTS = ("local", "minikube", "eks")


def deployment(name: str | None = None) -> str:
    """The deployment: `name` if given, else env KTX_DEPLOYMENT, else "local"; validated."""
    raw = name if name is not None else os.environ.get("KTX_DEPLOYMENT", "local")
    value = raw.strip().lower() or "local"
    if value not in DEPLOYMENTS:
        raise ValueError(f"KTX_DEPLOYMENT={value!r} is not one of {', '.join(DEPLOYMENTS)}")
    return value


def max_concurrent() -> int:
    raw = os.environ.get("KTX_MAX_CONCURRENT", "")
    if not raw:
        return os.cpu_count() or 1
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"KTX_MAX_CONCURRENT={raw!r} must be a whole number >= 1")
    return int(raw)


def executor_for(
    name: str | None = None,
    *,
    max_concurrent_steps: int | None = None,
    image: str | None = None,
    namespace: str | None = None,
) -> dg.ExecutorDefinition:
    """The executor of a deployment (default: KTX_DEPLOYMENT).

    max_concurrent_steps: step processes (local) or step Jobs (Kubernetes) of one run at
    once. image / namespace: the step pods' (Kubernetes; default from KTX_IMAGE /
    KTX_K8S_NAMESPACE, see `K8sSettings.from_env`).
    """
    name = deployment(name)
    if name == "local":
        from ktx_dagster.executors.local import local_executor, mode_from_env

        mode_from_env()  # a typo in KTX_LOCAL_EXECUTOR fails when the code location loads
        return local_executor.configured({"max_concurrent": max_concurrent_steps or max_concurrent()})
    from ktx_dagster.executors.k8s import k8s_executor

    config = {"job_image": image, "job_namespace": namespace, "max_concurrent": max_concurrent_steps}
    config = {k: v for k, v in config.items() if v is not None}
    return k8s_executor(name).configured(config) if config else k8s_executor(name)


def resources_for(name: str | None = None) -> dict[str, Any]:
    """The resources of a deployment: the data dir and the IO manager on it.

    The same everywhere: only KTX_DATA_DIR differs (./data, /mnt/data in Minikube pods,
    s3://... on EKS), and the k8s executor hands the pods their own.
    """
    deployment(name)
    return data_resources()

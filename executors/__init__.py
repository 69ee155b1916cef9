"""The one place that decides how and where steps run, from `KTX_DEPLOYMENT`.

local (default): executors/local.py. A run that is a chain of steps (one partition: the task,
then its checks) executes in the run's own process; a run whose steps can run side by side
gets Dagster's multiprocess executor, at most `KTX_MAX_CONCURRENT` step processes at once
(default: the number of CPUs). `KTX_LOCAL_EXECUTOR=multiprocess|in_process` forces either.
Data under `KTX_DATA_DIR`.
minikube / eks: every step is its own Kubernetes Job with the transformation's requests and
limits (executors/k8s.py; settings from env in `K8sSettings.from_env`).
"""

from __future__ import annotations

import os

import dagster as dg

from resources.data_dir import DataDir
from resources.io_manager import DataDirIOManager

DEPLOYMENTS = ("local", "minikube", "eks")


def deployment() -> str:
    name = os.environ.get("KTX_DEPLOYMENT", "local").strip().lower()
    if name not in DEPLOYMENTS:
        raise ValueError(f"KTX_DEPLOYMENT={name!r} is not one of {', '.join(DEPLOYMENTS)}")
    return name


def max_concurrent() -> int:
    raw = os.environ.get("KTX_MAX_CONCURRENT", "")
    if not raw:
        return os.cpu_count() or 1
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"KTX_MAX_CONCURRENT={raw!r} must be a whole number >= 1")
    return int(raw)


def executor_for(name: str) -> dg.ExecutorDefinition:
    if name == "local":
        from executors.local import local_executor, mode_from_env

        mode_from_env()  # a typo in KTX_LOCAL_EXECUTOR fails when the code location loads
        return local_executor.configured({"max_concurrent": max_concurrent()})
    if name in ("minikube", "eks"):
        from executors.k8s import k8s_executor

        return k8s_executor(name)
    raise ValueError(f"no executor for deployment {name!r}")


def resources_for(name: str) -> dict[str, object]:
    # Same resources everywhere: only KTX_DATA_DIR differs (./data, /mnt/data, s3://...).
    return {"io_manager": DataDirIOManager(), "data_dir": DataDir()}

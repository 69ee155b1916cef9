"""A self-contained code location for the k8s executor tests.

Loaded by file path (``PythonFileTarget``) by the test's code server, the run worker and
every step "pod", so it must not depend on the test process. Settings come from env
(``KTX_K8S_NAMESPACE``, ``KTX_IMAGE``, ``KUBECONFIG``...) exactly as in production.

Assets (each partition = one step = one Kubernetes Job):
* ``emu_square``: writes ``<KTX_DATA_DIR>/emu_square/<sha>.txt``; 250Mi/200m like Hello World.
* ``emu_crash``: prints marker lines, then dies with ``os._exit(3)`` (no Dagster failure
  event: what an OOM kill or segfault looks like) -> the executor's health check fails it.
* ``emu_flaky``: raises on its first attempt, succeeds on the retry (RetryPolicy).
"""


import hashlib
import os
import sys
from pathlib import Path

import ktx_dagster  # noqa: F401  (import order: the framework package before executors/)
import dagster as dg

from ktx_dagster.executors.k8s import k8s_executor

KEYS = ["0-999", "a/b c", "k" * 80]
PARTITIONS = dg.StaticPartitionsDefinition(KEYS)
REQUESTS = {"cpu": "200m", "memory": "250Mi", "ephemeral-storage": "100Mi"}
LIMITS = {"cpu": "200m", "memory": "275Mi", "ephemeral-storage": "100Mi"}


def _k8s_tags(name: str) -> dict:
    return {
        "dagster-k8s/config": {
            "container_config": {"resources": {"requests": REQUESTS, "limits": LIMITS}},
            "pod_spec_config": {
                "node_selector": {"kubernetes.io/os": "linux"},
                "tolerations": [{"key": "ktx/spot", "operator": "Exists", "effect": "NoSchedule"}],
            },
        },
        "ktx/transformation": name,
    }


def out_relpath(asset: str, key: str) -> str:
    return f"{asset}/{hashlib.sha256(key.encode()).hexdigest()[:16]}.txt"


def out_path(asset: str, key: str) -> Path:
    return Path(os.environ["KTX_DATA_DIR"]) / out_relpath(asset, key)


@dg.asset(partitions_def=PARTITIONS, op_tags=_k8s_tags("emu_square"))
def emu_square(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    key = context.partition_key
    path = out_path("emu_square", key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{key}\n{os.environ.get('HOSTNAME', '')}\n")
    print(f"emu_square wrote {path}", flush=True)
    return dg.MaterializeResult(
        metadata={"path": str(path), "hostname": os.environ.get("HOSTNAME", ""), "pid": os.getpid()}
    )


@dg.asset(partitions_def=PARTITIONS, op_tags=_k8s_tags("emu_crash"))
def emu_crash(context: dg.AssetExecutionContext) -> None:
    for i in range(30):
        print(f"crash-marker line {i} for {context.partition_key}", flush=True)
    sys.stdout.flush()
    os._exit(3)


@dg.asset(
    partitions_def=PARTITIONS,
    op_tags=_k8s_tags("emu_flaky"),
    retry_policy=dg.RetryPolicy(max_retries=1),
)
def emu_flaky(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    marker = out_path("emu_flaky_attempts", context.partition_key)
    marker.parent.mkdir(parents=True, exist_ok=True)
    attempts = int(marker.read_text()) if marker.exists() else 0
    marker.write_text(str(attempts + 1))
    if attempts == 0:
        raise RuntimeError("first attempt fails on purpose")
    return dg.MaterializeResult(metadata={"attempt": attempts + 1, "hostname": os.environ.get("HOSTNAME", "")})


def _upstream_executor() -> dg.ExecutorDefinition:
    """dagster-k8s's own executor, unchanged: reproduces its default-run-launcher bug."""
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor.configured(
        {
            "job_namespace": os.environ.get("KTX_K8S_NAMESPACE", "default"),
            "job_image": os.environ.get("KTX_IMAGE", "ktx-dagster:test"),
            "load_incluster_config": False,
            "kubeconfig_file": os.environ.get("KUBECONFIG"),
        }
    )


square_job = dg.define_asset_job("square_job", selection=[emu_square])
crash_job = dg.define_asset_job("crash_job", selection=[emu_crash])
flaky_job = dg.define_asset_job("flaky_job", selection=[emu_flaky])
upstream_square_job = dg.define_asset_job(
    "upstream_square_job",
    selection=[emu_square],
    executor_def=_upstream_executor(),
)

defs = dg.Definitions(
    assets=[emu_square, emu_crash, emu_flaky],
    jobs=[square_job, crash_job, flaky_job, upstream_square_job],
    executor=k8s_executor(os.environ.get("KTX_TEST_DEPLOYMENT", "minikube")),
)

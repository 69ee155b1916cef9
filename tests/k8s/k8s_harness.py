"""Helpers for the k8s suite: a cluster (emulated unless KTX_TEST_KUBECONFIG), a Dagster
instance whose runs are launched by a real run launcher, and a helper to launch partition
runs the way `dagster job launch` / the UI do (create run -> instance.submit_run).

Emulated case: SQLite in a temp DAGSTER_HOME is enough because the step "pods" are local
processes sharing this filesystem (and the run's instance_ref). A real cluster needs a
PostgreSQL instance reachable from the pods: set KTX_TEST_DAGSTER_HOME to a DAGSTER_HOME
whose dagster.yaml uses postgres (see deploy/minikube), KTX_TEST_IMAGE to an image with
this repo, and KTX_TEST_DATA_DIR to the directory mounted at /mnt/data.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
for _path in (REPO_ROOT, Path(__file__).resolve().parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from ktx_dagster.testing.pytest_plugin import K8sTestCluster  # noqa: E402

CODE_LOCATION = Path(__file__).with_name("k8s_code_location.py")
TEST_IMAGE = os.environ.get("KTX_TEST_IMAGE", "ktx-dagster:test")
# `dagster dev` queues runs and its daemon hands them to the run launcher; the tests skip the
# daemon by submitting straight to the (same, default) run launcher.
INSTANCE_YAML = """\
telemetry:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
"""


def seed_cluster_config(cluster: K8sTestCluster) -> None:
    """What deploy/minikube applies: instance ConfigMap, Postgres Secret, env ConfigMap."""
    cluster.apply(
        "configmaps",
        {"metadata": {"name": "ktx-dagster-instance"}, "data": {"dagster.yaml": INSTANCE_YAML}},
    )
    cluster.apply(
        "secrets",
        {"metadata": {"name": "ktx-postgres"}, "stringData": {"postgresql-password": "not-used-here"}},
    )
    cluster.apply(
        "configmaps",
        {"metadata": {"name": "ktx-instance-env"}, "data": {"KTX_FROM_ENV_CONFIGMAP": "yes"}},
    )
    cluster.apply("serviceaccounts", {"metadata": {"name": "ktx-step"}})


@dataclass
class DagsterK8sHarness:
    cluster: K8sTestCluster
    instance: Any
    workspace: Any  # WorkspaceProcessContext
    dagster_home: Path

    def launch(self, job_name: str, partition: str, tags: Mapping[str, str] | None = None) -> str:
        """Create a run for one partition and submit it: the instance's run coordinator and
        run launcher start it (DefaultRunLauncher: a run worker process via the code server)."""
        from dagster._cli.job import _create_run

        ctx = self.workspace.create_request_context()
        location = ctx.get_code_location("ktx_k8s_test")
        repo = next(iter(location.get_repositories().values()))
        remote_job = repo.get_full_job(job_name)
        run = _create_run(
            instance=self.instance,
            code_location=location,
            remote_repo=repo,
            remote_job=remote_job,
            run_config={},
            tags={"dagster/partition": partition, **(tags or {})},
            op_selection=None,
            run_id=None,
        )
        self.instance.submit_run(run.run_id, ctx)
        return run.run_id

    def wait(self, run_ids: Sequence[str], timeout: float = 120.0) -> dict[str, Any]:
        from dagster import DagsterRunStatus

        done = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
        deadline = time.monotonic() + timeout
        while True:
            runs = {rid: self.instance.get_run_by_id(rid) for rid in run_ids}
            if all(r is not None and r.status in done for r in runs.values()):
                return runs
            if time.monotonic() > deadline:
                states = {rid: (r.status if r else None) for rid, r in runs.items()}
                raise TimeoutError(f"runs not finished after {timeout}s: {states}\n{self.debug()}")
            time.sleep(0.25)

    def finished_jobs(self, label_selector: str, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Jobs matching the selector once `count` of them are Complete/Failed. A run can end
        before its last pod has exited (the step's events are written first), as on a cluster."""
        deadline = time.monotonic() + timeout
        while True:
            jobs = self.cluster.jobs(label_selector=label_selector)
            done = [
                j for j in jobs
                if any(c["type"] in ("Complete", "Failed") and c["status"] == "True"
                       for c in (j.get("status") or {}).get("conditions") or [])
            ]
            if len(done) >= count:
                return jobs
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(done)}/{count} jobs finished for {label_selector!r}\n{self.debug()}")
            time.sleep(0.2)

    def events(self, run_id: str, event_type: Any = None) -> list[Any]:
        records = self.instance.all_logs(run_id)
        return [r for r in records if r.dagster_event and (event_type is None or r.dagster_event.event_type == event_type)]

    def debug(self) -> str:
        if not self.cluster.emulated:
            return ""
        emu = self.cluster.emulator
        out = []
        for pod in emu.pods(self.cluster.namespace):
            name = pod["metadata"]["name"]
            out.append(f"--- pod {name} {pod['status'].get('phase')}\n{emu.pod_log(self.cluster.namespace, name)[-3000:]}")
        return "\n".join(out)


@contextlib.contextmanager
def dagster_harness(
    cluster: K8sTestCluster,
    dagster_home: Path,
    instance_yaml: str = INSTANCE_YAML,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[DagsterK8sHarness]:
    from dagster import DagsterInstance
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import PythonFileTarget

    real = not cluster.emulated
    if real:
        home = os.environ.get("KTX_TEST_DAGSTER_HOME")
        if not home:
            pytest.skip("a real cluster needs KTX_TEST_DAGSTER_HOME (PostgreSQL instance reachable from pods)")
        dagster_home = Path(home)
    else:
        dagster_home.mkdir(parents=True, exist_ok=True)
        (dagster_home / "dagster.yaml").write_text(instance_yaml)
    seed_cluster_config(cluster)
    env = {
        "DAGSTER_HOME": str(dagster_home),
        "KUBECONFIG": cluster.kubeconfig,
        "KTX_K8S_NAMESPACE": cluster.namespace,
        "KTX_IMAGE": TEST_IMAGE,
        "KTX_STEP_HEALTH_CHECK_SECONDS": "2",
        "DAGSTER_STEP_DELEGATING_EXECUTOR_SLEEP_SECONDS": "0.2",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        with DagsterInstance.get() as instance:
            target = PythonFileTarget(
                python_file=str(CODE_LOCATION),
                attribute="defs",
                working_directory=str(REPO_ROOT),
                location_name="ktx_k8s_test",
            )
            with WorkspaceProcessContext(instance, target) as workspace:
                errors = workspace.create_request_context().code_location_errors()
                assert not errors, errors
                yield DagsterK8sHarness(cluster, instance, workspace, dagster_home)

"""Helpers for the k8s suite: a cluster (emulated unless KTX_TEST_KUBECONFIG), a Dagster
instance whose runs are launched by a real run launcher, and helpers to launch partition
runs the way users do: `materialize()` sends the Dagster UI's own GraphQL mutation
(launchPipelineExecution with an asset selection and a `dagster/partition` tag) to the
workspace, `launch()` creates a run of a named job and submits it (`dagster job launch`).

Two code locations: the test one (tests/k8s/k8s_code_location.py, odd partition keys,
crashing and flaky assets) and the project's own, loaded from workspace.yaml exactly as
`dagster dev -w workspace.yaml` does (`project_harness`).

Emulated case: SQLite in a temp DAGSTER_HOME is enough because the step "pods" are local
processes sharing this filesystem (they write through the run's instance_ref); the
ConfigMaps/Secret that deploy/minikube applies are seeded into the emulator.

Real cluster (KTX_TEST_KUBECONFIG, e.g. Minikube after deploy/minikube/up.sh): nothing is
seeded, the namespace (KTX_TEST_NAMESPACE, use `ktx`) must hold what up.sh applied, and
  KTX_TEST_DAGSTER_HOME  a DAGSTER_HOME whose dagster.yaml uses PostgreSQL that the pods
                         reach too (up.sh's .dagster_home/minikube, DAGSTER_PG_* exported,
                         the port-forward running)
  KTX_TEST_IMAGE         the image in the cluster (default ktx-dagster:dev, built by up.sh)
  KTX_TEST_DATA_DIR      the laptop directory mounted at /mnt/data (default ./data)
Project tests work in a fresh `ktx-test-<id>` folder of the data dir (pods get it through
KTX_HOST_DATA_PATH=/mnt/data/ktx-test-<id>), so they never touch your own inputs; the test
code location is not in the image, so its tests skip on a real cluster.
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
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
for _path in (REPO_ROOT, Path(__file__).resolve().parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from ktx_dagster.testing.pytest_plugin import K8sTestCluster  # noqa: E402

CODE_LOCATION = Path(__file__).with_name("k8s_code_location.py")
TEST_LOCATION = "ktx_k8s_test"
# workspace.yaml's location names: asset -> location is looked up (`location_of`)
PROJECT_LOCATIONS = ("hello_world", "spotify_mpc")
WORKSPACE_YAML = REPO_ROOT / "workspace.yaml"
_REAL = bool(os.environ.get("KTX_TEST_KUBECONFIG"))
TEST_IMAGE = os.environ.get("KTX_TEST_IMAGE", "ktx-dagster:dev" if _REAL else "ktx-dagster:test")
# What deploy/minikube/up.sh leaves in the namespace; a real cluster must already have them.
CLUSTER_CONFIG = (("configmaps", "ktx-dagster-instance"), ("configmaps", "ktx-instance-env"),
                  ("secrets", "ktx-postgres"), ("serviceaccounts", "ktx-step"))
# `dagster dev` queues runs and its daemon hands them to the run launcher; the tests skip the
# daemon by submitting straight to the (same, default) run launcher.
INSTANCE_YAML = """\
telemetry:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
"""


def postgres_instance_yaml(pg: Any) -> str:
    """An instance on PostgreSQL that container pods reach over loopback (host network): runs,
    events and schedules there, no compute logs on this machine's disk (a container's root
    is read-only and does not hold this machine's DAGSTER_HOME)."""
    return yaml.safe_dump({
        "telemetry": {"enabled": False},
        "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"},
        "storage": {"postgres": {"postgres_db": {
            "username": pg.user, "password": pg.password, "hostname": pg.host, "db_name": pg.database,
            "port": pg.port, "scheme": "postgresql+psycopg2"}}},
        "compute_logs": {"module": "dagster._core.storage.noop_compute_log_manager", "class": "NoOpComputeLogManager"},
    })


def seed_cluster_config(
    cluster: K8sTestCluster,
    instance_yaml: str = INSTANCE_YAML,
    instance_env: Mapping[str, str] | None = None,
    pg_password: str = "not-used-here",
) -> None:
    """What deploy/minikube applies (ktx_dagster's K8sTestCluster.seed_deploy_config)."""
    cluster.seed_deploy_config(instance_yaml, instance_env, pg_password)


def require_cluster_config(cluster: K8sTestCluster) -> None:
    """A real cluster must hold what deploy/minikube/up.sh applied (skip with how, if not)."""
    import kubernetes

    read = {
        "configmaps": cluster.core.read_namespaced_config_map,
        "secrets": cluster.core.read_namespaced_secret,
        "serviceaccounts": cluster.core.read_namespaced_service_account,
    }
    missing = []
    for plural, name in CLUSTER_CONFIG:
        try:
            read[plural](name, cluster.namespace)
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise
            missing.append(f"{plural}/{name}")
    if missing:
        pytest.skip(
            f"namespace {cluster.namespace!r} lacks {', '.join(missing)}: run deploy/minikube/up.sh "
            "and set KTX_TEST_NAMESPACE=ktx"
        )


@contextlib.contextmanager
def data_sandbox(cluster: K8sTestCluster) -> Iterator[tuple[Path, str]]:
    """A fresh folder under the cluster's data dir: (local path, the node's hostPath).

    Pods mount the hostPath at /mnt/data (KTX_HOST_DATA_PATH), the launching process uses the
    local path as KTX_DATA_DIR: the same files, seen from both sides, and on a real cluster
    never the user's own inputs."""
    import shutil
    import uuid

    name = f"ktx-test-{uuid.uuid4().hex[:8]}"
    local = cluster.data_dir / name
    local.mkdir(parents=True)
    try:
        yield local, f"/mnt/data/{name}"
    finally:
        shutil.rmtree(local, ignore_errors=True)


@dataclass
class DagsterK8sHarness:
    cluster: K8sTestCluster
    instance: Any
    workspace: Any  # WorkspaceProcessContext
    dagster_home: Path
    location_name: str = TEST_LOCATION

    def materialize(self, asset: str, partition: str | None) -> str:
        """Launch one partition of one asset exactly as the UI's Materialize button does: the
        launchPipelineExecution GraphQL mutation (implicit asset job, asset selection, the
        `dagster/partition` tag), answered by this workspace. Checks of the asset come along,
        as in the UI. Queued runs are then handed to the run launcher, which is what the
        daemon's run queue would do next (`dagster dev` runs that daemon)."""
        from dagster import AssetKey, DagsterRunStatus
        from dagster_graphql.client.query import LAUNCH_PIPELINE_EXECUTION_MUTATION
        from dagster_graphql.test.utils import execute_dagster_graphql

        ctx = self.workspace.create_request_context()
        location = ctx.get_code_location(self.location_of(asset))
        (repo,) = location.get_repositories().values()
        selector = {
            "repositoryLocationName": location.name,
            "repositoryName": repo.name,
            "pipelineName": "__ASSET_JOB",
            "assetSelection": [AssetKey.from_user_string(asset).to_graphql_input()],
        }
        tags = [{"key": "dagster/partition", "value": partition}] if partition is not None else []
        result = execute_dagster_graphql(
            ctx, LAUNCH_PIPELINE_EXECUTION_MUTATION,
            variables={"executionParams": {"selector": selector, "executionMetadata": {"tags": tags}}},
        )
        data = result.data["launchPipelineExecution"]
        assert data["__typename"] == "LaunchRunSuccess", data
        run_id = data["run"]["runId"]
        run = self.instance.get_run_by_id(run_id)
        if run is not None and run.status == DagsterRunStatus.QUEUED:
            self.instance.launch_run(run_id, self.workspace.create_request_context())
        return run_id

    def location_of(self, asset: str) -> str:
        """The workspace's code location that holds `asset` (this harness's own by default)."""
        from dagster import AssetKey

        ctx = self.workspace.create_request_context()
        for name in ctx.code_location_names:
            location = ctx.get_code_location(name)
            for repo in location.get_repositories().values():
                if any(n.asset_key == AssetKey.from_user_string(asset) for n in repo.get_asset_node_snaps()):
                    return name
        return self.location_name

    def launch(self, job_name: str, partition: str, tags: Mapping[str, str] | None = None) -> str:
        """Create a run for one partition and submit it: the instance's run coordinator and
        run launcher start it (DefaultRunLauncher: a run worker process via the code server)."""
        from dagster._cli.job import _create_run

        ctx = self.workspace.create_request_context()
        location = ctx.get_code_location(self.location_name)
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
    target: Any = None,
    location_name: str = TEST_LOCATION,
    seed: bool = True,
) -> Iterator[DagsterK8sHarness]:
    """A Dagster instance + workspace (code server) whose runs launch steps on `cluster`.

    `target`: a dagster workspace load target (default: the test code location). `seed`:
    put deploy/minikube's ConfigMaps/Secret into the emulator (False: the caller did)."""
    from dagster import DagsterInstance
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import PythonFileTarget

    real = not cluster.emulated
    if target is None:
        if real:
            pytest.skip("the test code location (tests/k8s) is not in the image; on a real cluster "
                        "the project-definition tests (test_project_on_k8s.py) run instead")
        target = PythonFileTarget(
            python_file=str(CODE_LOCATION),
            attribute="defs",
            working_directory=str(REPO_ROOT),
            location_name=location_name,
        )
    if real:
        home = os.environ.get("KTX_TEST_DAGSTER_HOME")
        if not home:
            pytest.skip("a real cluster needs KTX_TEST_DAGSTER_HOME (PostgreSQL instance reachable from pods)")
        dagster_home = Path(home)
        require_cluster_config(cluster)
    else:
        dagster_home.mkdir(parents=True, exist_ok=True)
        (dagster_home / "dagster.yaml").write_text(instance_yaml)
        if seed:
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
        mp.chdir(REPO_ROOT)
        before = _code_server_children()
        try:
            with DagsterInstance.get() as instance:
                with WorkspaceProcessContext(instance, target) as workspace:
                    errors = workspace.create_request_context().code_location_errors()
                    assert not errors, errors
                    yield DagsterK8sHarness(cluster, instance, workspace, dagster_home, location_name)
        finally:
            _stop(_code_server_children() - before)


def _code_server_children() -> set[int]:
    """This process's `dagster api grpc` children (Linux /proc; none elsewhere)."""
    found: set[int] = set()
    if not os.path.isdir("/proc"):
        return found
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and b"api" in argv and b"grpc" in argv:
            found.add(int(entry))
    return found


def _stop(pids: set[int], grace: float = 10.0) -> None:
    """The workspace asks its code server to shut down but does not wait for it. Left running,
    it outlives the test's PostgreSQL and retries its connection for minutes (then belongs to
    init): wait for it, then kill it, so a test stops what it started."""
    import signal

    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        for pid in list(pids):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    continue
            pids.discard(pid)
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def project_env(cluster: K8sTestCluster, data_dir: Path, host_data_path: str) -> dict[str, str]:
    """What up.sh tells you to export before `dagster dev`, for this cluster and data folder."""
    return {
        "KTX_DEPLOYMENT": "minikube",
        "KTX_DATA_DIR": str(data_dir),
        "KTX_HOST_DATA_PATH": host_data_path,
        "KTX_K8S_NAMESPACE": cluster.namespace,
        "KTX_IMAGE": TEST_IMAGE,
        "KUBECONFIG": cluster.kubeconfig,
    }


@contextlib.contextmanager
def project_harness(
    cluster: K8sTestCluster, dagster_home: Path, data_dir: Path, host_data_path: str,
    instance_yaml: str = INSTANCE_YAML,
) -> Iterator[DagsterK8sHarness]:
    """The project's code locations from workspace.yaml (Hello World and the Spotify chain),
    as `dagster dev -w workspace.yaml` loads them, with KTX_DEPLOYMENT=minikube."""
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    with dagster_harness(
        cluster,
        dagster_home,
        extra_env=project_env(cluster, data_dir, host_data_path),
        target=WorkspaceFileTarget(paths=[str(WORKSPACE_YAML)]),
        location_name=PROJECT_LOCATIONS[0],
        instance_yaml=instance_yaml,
    ) as h:
        yield h

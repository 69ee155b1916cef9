"""The Minikube topology with a real PostgreSQL: the laptop and every step pod share ONE
Dagster instance, configured by the one file deploy/minikube/dagster.yaml.

* PostgreSQL: a throwaway server from Debian's `postgresql` package (`ktx_postgres`).
* Laptop side: DAGSTER_HOME holding a copy of deploy/minikube/dagster.yaml (what up.sh does)
  and DAGSTER_PG_* in the env; Hello World launched with the project's CLI,
  `ktx materialize -m assets.definitions --select hello_world` and KTX_DEPLOYMENT=minikube
  (its worker processes run one execute_job per partition; each step becomes a Job).
* Pod side: what deploy/minikube/manifests/30-dagster-instance.yaml applies, read from that
  file: the ConfigMap with the same dagster.yaml (mounted at $DAGSTER_HOME/dagster.yaml) and
  `ktx-instance-env` (envFrom), plus the password Secret `ktx-postgres`. The emulator's pods
  inherit no DAGSTER_PG_* from this process: they reach PostgreSQL only through that config.
  The host/port are this server's, as the emulator has no cluster DNS.

Then a fresh instance on the same database must see the step events that the pods wrote.
Twice: with pods as local processes, and with pods as containers of the real image
(`ktx-dagster:test`, runtime "docker": the step pods' user, read-only root, memory limits and
the instance ConfigMap are then the container's own).
Emulator only: on a real cluster the project tests (test_project_on_k8s.py) run against the
cluster's own PostgreSQL when KTX_TEST_DAGSTER_HOME is the Minikube instance.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus

from assets.hello_world import HELLO_WORLD_FILES
from assets.logic.greeting import greet_lines
from assets.samples import write_hello_world_sample
from k8s_harness import REPO_ROOT, TEST_IMAGE, data_sandbox, project_env, seed_cluster_config
from ktx_dagster.data_dir import data_root
from ktx_dagster.testing.containers import docker_client, require_image
from ktx_dagster.testing.pytest_plugin import k8s_test_cluster

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(300)]

MINIKUBE = REPO_ROOT / "deploy" / "minikube"
PARTS = 2
LAPTOP_UID = 1000  # who owns ./data on the laptop, and so the mount in Minikube's node


def _manifest_configmaps() -> dict[str, dict[str, str]]:
    docs = yaml.safe_load_all((MINIKUBE / "manifests" / "30-dagster-instance.yaml").read_text())
    return {d["metadata"]["name"]: d["data"] for d in docs if d and d.get("kind") == "ConfigMap"}


def _wait_for_phases(cluster, selector: str, timeout: float = 30.0) -> list[str]:
    import time

    deadline = time.monotonic() + timeout
    while True:
        phases = [p["status"]["phase"] for p in cluster.pods(label_selector=selector)]
        if all(phase in ("Succeeded", "Failed") for phase in phases) or time.monotonic() > deadline:
            return phases
        time.sleep(0.2)


@pytest.fixture(params=["process", pytest.param("docker", marks=pytest.mark.container)])
def cluster(request, tmp_path):
    """The emulated cluster, its pods local processes or containers of the image."""
    if os.environ.get("KTX_TEST_KUBECONFIG"):
        pytest.skip("emulator only: a real cluster runs test_project_on_k8s.py against its own PostgreSQL")
    if request.param == "docker":
        require_image(TEST_IMAGE)
        os.environ.setdefault("KTX_DOCKER", docker_client())
    with k8s_test_cluster(tmp_path / "cluster", project_dir=REPO_ROOT, runtime=request.param) as c:
        yield c


def test_laptop_and_step_pods_share_one_postgres_instance(cluster, ktx_postgres, tmp_path, monkeypatch):
    pg = ktx_postgres.create_database(f"ktx_{uuid.uuid4().hex[:10]}")

    # Pods: the manifests' ConfigMaps (same dagster.yaml as the laptop's) and the Secret.
    configmaps = _manifest_configmaps()
    pod_instance_yaml = configmaps["ktx-dagster-instance"]["dagster.yaml"]
    assert pod_instance_yaml == (MINIKUBE / "dagster.yaml").read_text()
    pod_env = dict(configmaps["ktx-instance-env"])
    assert pod_env["DAGSTER_PG_HOST"] == "ktx-postgres.ktx.svc.cluster.local"
    pod_env.update({"DAGSTER_PG_HOST": pg.host, "DAGSTER_PG_PORT": str(pg.port), "DAGSTER_PG_DB": pg.database})
    assert pod_env["DAGSTER_PG_USER"] == pg.user
    assert "DAGSTER_PG_PASSWORD" not in pod_env
    seed_cluster_config(cluster, instance_yaml=pod_instance_yaml, instance_env=pod_env, pg_password=pg.password)

    # Laptop: DAGSTER_HOME as up.sh leaves it, and the env it tells you to export.
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(MINIKUBE / "dagster.yaml", home / "dagster.yaml")
    with data_sandbox(cluster) as (data, host_path):
        root = data_root(str(data))
        write_hello_world_sample(root, parts=PARTS)
        # Minikube's Docker driver mounts ./data owned by the laptop's user (here uid 1000),
        # and fsGroup does not apply to a hostPath: the steps run as that owner.
        for path in [data, *data.rglob("*")]:
            os.chown(path, LAPTOP_UID, LAPTOP_UID)
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        keys = [f"part_{i}" for i in range(1, PARTS + 1)]
        env = {
            **os.environ,
            **project_env(cluster, data, host_path),
            **pg.dagster_env(),
            "DAGSTER_HOME": str(home),
            "KTX_COMPUTE_LOGS_DIR": str(data / ".dagster" / "compute_logs"),  # up.sh's env file
            "KTX_STEP_HEALTH_CHECK_SECONDS": "2",
            "DAGSTER_STEP_DELEGATING_EXECUTOR_SLEEP_SECONDS": "0.2",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
            "KTX_RUN_AS_USER": str(LAPTOP_UID),
            "KTX_RUN_AS_GROUP": str(LAPTOP_UID),
        }
        proc = subprocess.run(
            [sys.executable, "-m", "ktx_dagster", "materialize", "-m", "assets.definitions", "--select", "hello_world", "--max-concurrent", "2"],
            env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240,
        )
        logs = "\n".join(p.read_text() for p in (home / "ktx-cli-logs").rglob("*.log"))
        assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{logs[-6000:]}"
        print(proc.stdout)
        assert "hello_world: 2 partition(s)" in proc.stdout, proc.stdout
        for key in keys:
            source = (data / HELLO_WORLD_FILES.directory / f"{key}.txt").read_text()
            output = data / "hello_world" / f"{key}.txt"
            assert output.read_text() == greet_lines(source)
            if cluster.emulator.runtime == "docker":  # written by a container running as the owner
                assert output.stat().st_uid == LAPTOP_UID

        # The steps really ran as Jobs, configured from the manifests' ConfigMaps/Secret.
        jobs = cluster.jobs(label_selector="ktx/transformation=hello_world")
        assert sorted(j["metadata"]["labels"]["ktx/partition"] for j in jobs) == keys  # one Job: task and checks
        for job in jobs:
            pod_spec = job["spec"]["template"]["spec"]
            (container,) = pod_spec["containers"]
            assert {"configMapRef": {"name": "ktx-instance-env"}} in container["envFrom"]
            password = next(e for e in container["env"] if e["name"] == "DAGSTER_PG_PASSWORD")
            assert password["valueFrom"]["secretKeyRef"] == {"name": "ktx-postgres", "key": "postgresql-password"}
            volumes = {v["name"]: v for v in pod_spec["volumes"]}
            assert volumes["dagster-instance"]["configMap"]["name"] == "ktx-dagster-instance"
            # The step is done once its events are written; its pod ends a moment later
            # (a container's exit is inspected and reaped, on a real node too).
            phases = _wait_for_phases(cluster, f"job-name={job['metadata']['name']}")
            assert phases == ["Succeeded"], phases

    # A fresh instance from the same file and database sees what the pods wrote.
    for name, value in {**pg.dagster_env(), "DAGSTER_HOME": str(home)}.items():
        monkeypatch.setenv(name, value)
    with DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        runs = instance.get_runs()
        assert sorted(r.tags["dagster/partition"] for r in runs) == keys
        assert {r.status for r in runs} == {DagsterRunStatus.SUCCESS}
        for run in runs:
            records = [r for r in instance.all_logs(run.run_id) if r.dagster_event]
            by_type: dict = {}
            for r in records:
                by_type.setdefault(r.dagster_event.event_type, []).append(r)
            (run_start,) = by_type[DagsterEventType.RUN_START]
            step_starts = by_type[DagsterEventType.STEP_START]
            assert sorted(r.step_key for r in step_starts) == ["hello_world"]  # checks in the same step
            # written by other processes than the run worker: the step pods
            assert all(r.dagster_event.pid != run_start.dagster_event.pid for r in step_starts)
            assert len(by_type[DagsterEventType.STEP_SUCCESS]) == 1
            assert len(by_type[DagsterEventType.ASSET_CHECK_EVALUATION]) == 3
            (mat,) = by_type[DagsterEventType.ASSET_MATERIALIZATION]
            assert mat.dagster_event.pid != run_start.dagster_event.pid
            assert mat.dagster_event.event_specific_data.materialization.partition == run.tags["dagster/partition"]
            assert len(by_type[DagsterEventType.STEP_WORKER_STARTING]) == 1
        assert instance.get_materialized_partitions(AssetKey("hello_world")) == set(keys)

    # ...and it is all in PostgreSQL's own tables, not in some SQLite file next to a process.
    ((count,),) = pg.query(
        "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'STEP_SUCCESS' AND step_key = 'hello_world'"
    )
    assert count == PARTS
    assert not list(Path(home).rglob("*.db"))

"""The emulator's control-plane runtime (warm_pods.py): Dagster commands in pods run forked
from the warm fork server (ktx_dagster.warm), with the pod's env and cwd, their exit code, logs and CPU counted,
and a deleted pod's process killed; a partition step through the Kubernetes executor still
writes its output and its events. bench/backfill.py --pod-runtime control-plane uses it."""

from __future__ import annotations

import os
import time

import kubernetes
import pytest
from dagster import DagsterEventType, DagsterRunStatus
from kubernetes import client

from ktx_dagster.testing.k8s_emulator import KubeEmulator
from ktx_dagster.testing.k8s_emulator.warm_pods import dagster_command
from ktx_dagster.testing.pytest_plugin import k8s_test_cluster

from k8s_code_location import out_relpath
from k8s_harness import dagster_harness

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    with KubeEmulator(str(tmp_path_factory.mktemp("emu")), namespaces=["t"], runtime="control-plane") as e:
        yield e


@pytest.fixture(scope="module")
def core(emu):
    return client.CoreV1Api(kubernetes.config.new_client_from_config(config_file=emu.kubeconfig_path))


def _pod(name, command, env=None):
    return {"metadata": {"name": name}, "spec": {"restartPolicy": "Never", "containers": [
        {"name": "main", "image": "ignored", "command": command,
         "env": [{"name": k, "value": v} for k, v in (env or {}).items()]}]}}


def _wait_phase(core, name, phases=("Succeeded", "Failed"), timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod(name, "t")
        if pod.status.phase in phases:
            return pod
        time.sleep(0.05)
    raise TimeoutError(f"pod {name} still {pod.status.phase}")


def _log(core, name):
    return core.read_namespaced_pod_log(name, "t", _preload_content=False).data.decode()


def test_the_dagster_command_is_found_behind_a_wrapper():
    assert dagster_command(["python", "-c", "import step_worker", "dagster", "api", "execute_step"]) == [
        "dagster", "api", "execute_step"]
    assert dagster_command(["/venv/bin/dagster", "api", "execute_run"]) == ["/venv/bin/dagster", "api", "execute_run"]
    assert dagster_command(["sh", "-c", "echo dagster"]) is None


def test_a_dagster_command_runs_forked_with_the_pods_env_and_its_cpu_counted(emu, core, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    before = (emu.pods_run, emu.pod_cpu_seconds)
    core.create_namespaced_pod("t", _pod("info", ["python", "-c", "wrapper", "dagster", "instance", "info"],
                                         {"DAGSTER_HOME": str(home)}))
    pod = _wait_phase(core, "info")
    log = _log(core, "info")
    assert pod.status.phase == "Succeeded", log
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    assert str(home) in log  # the pod's DAGSTER_HOME, not the warm interpreter's
    assert emu.pods_run == before[0] + 1
    assert emu.pod_cpu_seconds > before[1]


def test_a_failing_dagster_command_fails_the_pod_with_its_exit_code(emu, core):
    core.create_namespaced_pod("t", _pod("bad", ["dagster", "api", "no-such-command"]))
    pod = _wait_phase(core, "bad")
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 2  # click's usage error
    assert "no-such-command" in _log(core, "bad")


def test_other_commands_run_as_processes(emu, core):
    before = emu.pods_run
    core.create_namespaced_pod("t", _pod("sh", ["sh", "-c", "echo plain process"]))
    assert _wait_phase(core, "sh").status.phase == "Succeeded"
    assert _log(core, "sh") == "plain process\n"
    assert emu.pods_run == before  # not forked from the warm interpreter


def test_deleting_a_pod_kills_its_forked_process(emu, core, tmp_path):
    sock = tmp_path / "grpc.sock"
    core.create_namespaced_pod("t", _pod("server", ["dagster", "api", "grpc", "--socket", str(sock),
                                                     "--empty-working-directory"]))
    _wait_phase(core, "server", phases=("Running",))
    deadline = time.monotonic() + 60
    while not emu._runtimes[("t", "server")].started and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = emu._runtimes[("t", "server")].proc.pid
    os.kill(pid, 0)  # alive
    core.delete_namespaced_pod("server", "t", grace_period_seconds=1)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"pod process {pid} outlived its pod")


def test_a_partition_step_through_the_k8s_executor_runs_forked(tmp_path):
    key = "0-999"
    with k8s_test_cluster(tmp_path / "k8s", runtime="control-plane") as cluster, \
            dagster_harness(cluster, tmp_path / "home") as harness:
        run_id = harness.launch("square_job", key)
        run = harness.wait([run_id], timeout=150)[run_id]
        assert run.status == DagsterRunStatus.SUCCESS, harness.debug()
        (job,) = harness.finished_jobs(f"dagster/run-id={run_id}", 1)
        (pod,) = cluster.pods(label_selector=f"job-name={job['metadata']['name']}")
        assert pod["status"]["phase"] == "Succeeded"
        assert cluster.emulator.pods_run == 1 and cluster.emulator.pod_cpu_seconds > 0
        # the step really ran in that pod: its output, and its events in the instance
        out = cluster.data_dir / out_relpath("emu_square", key)
        assert out.read_text().splitlines() == [key, pod["metadata"]["name"]]
        types = [r.dagster_event.event_type for r in harness.events(run_id)]
        assert DagsterEventType.STEP_SUCCESS in types and DagsterEventType.ASSET_MATERIALIZATION in types

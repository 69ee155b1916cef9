"""A step pod killed half-way through writing its partition's output (the emulated cluster,
pods as processes): the step's process stops half-way through the IO manager's write (the
code location tests/fixtures/fault_defs.py says when) and is sent SIGKILL, what the kubelet
does once a pod's grace period is over. No partial object at the output path, the run
FAILED, and the re-run completes it."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterRunStatus

from k8s_harness import REPO_ROOT, dagster_harness
from ktx_dagster.testing.pytest_plugin import k8s_test_cluster

LOCATION = REPO_ROOT / "tests" / "fixtures" / "fault_defs.py"
pytestmark = [pytest.mark.k8s, pytest.mark.timeout(300)]


def _writer_text(partition: str) -> str:
    import sys

    sys.path.insert(0, str(LOCATION.parent))
    from fault_defs import writer_text

    return writer_text(partition)


@pytest.fixture
def cluster_harness(tmp_path):
    from dagster._core.workspace.load_target import PythonFileTarget

    target = PythonFileTarget(python_file=str(LOCATION), attribute="defs", working_directory=str(REPO_ROOT),
                              location_name="faults")
    with k8s_test_cluster(tmp_path / "cluster", project_dir=REPO_ROOT, runtime="process") as cluster:
        if not cluster.emulated:
            pytest.skip("the fault code location (tests/fixtures) is not in the image of a real cluster")
        env = {"KTX_DEPLOYMENT": "minikube", "KTX_DATA_DIR": str(cluster.data_dir)}
        with dagster_harness(cluster, tmp_path / "home", target=target, location_name="faults", extra_env=env) as h:
            yield h


def _wait_for(path: Path, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"no stalled write after {timeout}s"
        time.sleep(0.05)
    return json.loads(path.read_text())


@pytest.mark.reliability(
    "fault", case="a step pod SIGKILLed in the middle of writing its output",
    injected="an emulated step pod whose process stops half-way through writing its partition's output "
             "(half the bytes on disk), then is sent SIGKILL (what the kubelet sends when the grace period ends)",
    seen="the pod Failed with exit code 137; the step fails ('Discovered failed Kubernetes job'); the run FAILURE",
    outcome="no file at the output path (only the hidden temporary file holds the half write); re-running the "
            "partition writes it whole")
def test_a_step_pod_killed_mid_write_leaves_no_partial_output_and_the_rerun_completes(cluster_harness):
    h, data = cluster_harness, cluster_harness.cluster.data_dir
    stall = data / "_stall_writes" / "writer" / "p2"
    stall.parent.mkdir(parents=True)
    stall.touch()
    run_id = h.materialize("writer", "p2")
    report = _wait_for(stall.with_name("p2.writing"))
    (pod,) = h.cluster.pods(label_selector=f"dagster/run-id={run_id}")
    assert pod["status"]["phase"] == "Running"
    at_kill = {p.name: p.stat().st_size for p in (data / "writer").iterdir()}
    os.kill(report["pid"], signal.SIGKILL)

    run = h.wait([run_id], timeout=180)[run_id]
    assert run.status == DagsterRunStatus.FAILURE, h.debug()
    # the kill came mid-write, into the IO manager's hidden temporary file; nothing at the output path
    written = Path(report["path"])
    assert written.name.startswith(".p2.txt.") and written.name.endswith(".tmp"), written
    assert at_kill == {written.name: report["bytes_written"]}
    assert report["bytes_written"] == len(_writer_text("p2")) // 2
    assert not (data / "writer" / "p2.txt").exists()
    (pod,) = h.cluster.pods(label_selector=f"dagster/run-id={run_id}")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (pod["status"]["phase"], terminated["exitCode"]) == ("Failed", 137), pod["status"]
    (failure,) = h.events(run_id, DagsterEventType.STEP_FAILURE)
    assert "Discovered failed Kubernetes job" in failure.dagster_event.event_specific_data.error.message

    stall.unlink()  # the re-run's write goes through
    rerun = h.materialize("writer", "p2")
    assert h.wait([rerun], timeout=180)[rerun].status == DagsterRunStatus.SUCCESS, h.debug()
    assert (data / "writer" / "p2.txt").read_text() == _writer_text("p2")

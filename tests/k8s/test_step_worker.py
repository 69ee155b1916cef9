"""The step pod's entry point: a disruption's SIGTERM does not reach Dagster's step worker
(which would fail the step); a run's cancellation does; a SIGKILL ends both."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path

import dagster as dg
import pytest

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(60)]

# The "step worker": says it started, writes its pid, and records a SIGTERM before exiting 143.
CHILD = """
import os, signal, sys, time
from pathlib import Path
out = Path(sys.argv[1])
def on_term(*_):
    (out / "term").write_text("TERM")
    sys.exit(143)
signal.signal(signal.SIGTERM, on_term)
(out / "pid").write_text(str(os.getpid()))
time.sleep(60)
"""


def _args_env(instance: dg.DagsterInstance, status: dg.DagsterRunStatus) -> dict[str, str]:
    """DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS as the executor sets it, for a run in `status`."""
    run_id = str(uuid.uuid4())
    instance.add_run(dg.DagsterRun(job_name="__ASSET_JOB", run_id=run_id, status=status))
    args = {"__class__": "ExecuteStepArgs", "pipeline_run_id": run_id,
            "instance_ref": json.loads(dg.serialize_value(instance.get_ref()))}
    return {"DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS": base64.b64encode(zlib.compress(json.dumps(args).encode())).decode()}


def _start(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    worker = subprocess.Popen(
        [sys.executable, "-m", "ktx_dagster.executors.step_worker", sys.executable, "-c", CHILD, str(tmp_path)],
        env={**os.environ, **env}, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 20
    while not (tmp_path / "pid").exists():
        assert time.monotonic() < deadline and worker.poll() is None, worker.stderr.read() if worker.stderr else ""
        time.sleep(0.05)
    return worker, int((tmp_path / "pid").read_text())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        yield instance


def test_a_disruption_sigterm_does_not_reach_the_step_and_sigkill_ends_both(tmp_path, instance):
    worker, child = _start(tmp_path, _args_env(instance, dg.DagsterRunStatus.STARTED))
    os.killpg(worker.pid, signal.SIGTERM)  # the emulator's kubelet signals the pod's process group
    time.sleep(1.5)
    assert not (tmp_path / "term").exists() and _alive(child) and worker.poll() is None
    os.killpg(worker.pid, signal.SIGKILL)  # the end of the grace period
    worker.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _alive(child):
        assert time.monotonic() < deadline, "the step worker outlived its pod's SIGKILL"
        time.sleep(0.05)
    assert "this pod is being disrupted" in worker.stderr.read()


@pytest.mark.parametrize("env_of", ["canceling", "unknown"])
def test_a_cancellation_or_an_unknown_run_passes_sigterm_on(tmp_path, instance, env_of):
    env = _args_env(instance, dg.DagsterRunStatus.CANCELING) if env_of == "canceling" else {}
    worker, _child = _start(tmp_path, env)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 143, worker.stderr.read()
    assert (tmp_path / "term").read_text() == "TERM"

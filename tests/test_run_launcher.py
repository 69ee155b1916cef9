"""ktx_dagster/run_launcher.py: runs start in warm forked processes, end, cancel and crash as
Dagster's own run workers do. Real runs in a real instance configured like `make dev`'s."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.launcher.base import WorkerStatus

from ktx_dagster.run_launcher import CODE_SERVER_TAG, PID_TAG, WarmRunLauncher

REPO = Path(__file__).resolve().parents[1]
DEFS = REPO / "tests" / "fixtures" / "run_defs.py"


@pytest.fixture
def instance(tmp_path, monkeypatch):
    """An instance from the repo's deploy/local/dagster.yaml (the launcher under test)."""
    home = tmp_path / "home"
    home.mkdir()
    config = yaml.safe_load((REPO / "deploy" / "local" / "dagster.yaml").read_text())
    config["run_coordinator"]["config"]["max_concurrent_runs"] = 2
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as inst:
        assert isinstance(inst.run_launcher, WarmRunLauncher)
        yield inst


def _create(instance, asset: str, **kwargs):
    recon_repo = ReconstructableRepository.for_file(str(DEFS), "defs", working_directory=str(REPO))
    key = dg.AssetKey(asset)
    job_def = recon_repo.get_definition().get_implicit_job_def_for_assets([key])
    recon_job = recon_repo.get_reconstructable_job(job_def.name)
    return instance.create_run_for_job(
        job_def, asset_selection=frozenset([key]), job_code_origin=recon_job.get_python_origin(), **kwargs,
    )


def _launch(instance, asset: str):
    run = _create(instance, asset)
    instance.launch_run(run.run_id, workspace=None)  # the launcher needs no workspace
    return run.run_id


def _wait(instance, run_id: str, predicate, what: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if predicate(run):
            return run
        time.sleep(0.2)
    logs = "\n".join(str(e.user_message) for e in instance.all_logs(run_id))
    raise AssertionError(f"run {run_id} not {what} after {timeout}s, status {run.status}:\n{logs}")


def _step_started(instance, run_id: str) -> bool:
    return any(e.dagster_event and e.dagster_event.event_type_value == "STEP_START" for e in instance.all_logs(run_id))


def test_run_executes_in_a_forked_process_with_the_callers_environment(instance, monkeypatch):
    monkeypatch.setenv("KTX_TEST_PROBE", "set-after-the-fork-server-started")
    run_id = _launch(instance, "env_probe")
    run = _wait(instance, run_id, lambda r: r.is_finished, "finished")
    assert run.status == dg.DagsterRunStatus.SUCCESS
    pid = int(run.tags[PID_TAG])
    assert pid != os.getpid()
    messages = [e.user_message for e in instance.all_logs(run_id)]
    assert f"Executing steps in process (pid: {pid})" in messages
    import pickle

    stored = Path(instance.storage_directory()) / "env_probe"
    assert pickle.loads(stored.read_bytes()) == "set-after-the-fork-server-started"
    # the run's last event is written just before its process exits: give it that moment
    deadline = time.monotonic() + 30
    while (health := instance.run_launcher.check_run_worker_health(run)).status == WorkerStatus.RUNNING:
        assert time.monotonic() < deadline, f"run process {pid} still alive 30 s after its run ended"
        time.sleep(0.1)
    assert health.status == WorkerStatus.SUCCESS


def test_terminate_cancels_a_running_run(instance, monkeypatch):
    monkeypatch.setenv("KTX_TEST_SLEEP", "120")
    run_id = _launch(instance, "sleepy")
    run = _wait(instance, run_id, lambda r: _step_started(instance, r.run_id), "in its step")
    assert instance.run_launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
    assert instance.run_launcher.terminate(run_id)
    # the step sleeps 120 s: ending within the wait means it was interrupted, not slept out
    run = _wait(instance, run_id, lambda r: r.is_finished, "finished", timeout=60)
    assert run.status == dg.DagsterRunStatus.CANCELED
    events = [e.dagster_event.event_type_value for e in instance.all_logs(run_id) if e.dagster_event]
    assert "ASSET_MATERIALIZATION" not in events and "STEP_SUCCESS" not in events
    assert not instance.run_launcher.terminate(run_id)  # already over


def test_the_health_check_reports_a_killed_run_process_failed(instance, monkeypatch):
    """What run monitoring asks the launcher (the daemon itself: test_the_daemons_run_monitoring_...)."""
    monkeypatch.setenv("KTX_TEST_SLEEP", "120")
    run_id = _launch(instance, "sleepy")
    run = _wait(instance, run_id, lambda r: _step_started(instance, r.run_id), "in its step")
    os.kill(int(run.tags[PID_TAG]), signal.SIGKILL)  # an OOM kill, as far as the run can tell
    deadline = time.monotonic() + 30
    while (health := instance.run_launcher.check_run_worker_health(run)).status == WorkerStatus.RUNNING:
        assert time.monotonic() < deadline, "the killed process still looks alive"
        time.sleep(0.2)
    assert health.status == WorkerStatus.FAILED and "-9" in health.msg
    # Another process of the deployment (no handle on the process) sees the same.
    assert WarmRunLauncher().check_run_worker_health(run).status == WorkerStatus.FAILED


def _kill_in_step(instance, monkeypatch):
    """A run SIGKILLed in its step (what an OOM kill looks like to the run); once its process
    is gone for good (reaped), returns the run, still STARTED: nothing ended it."""
    monkeypatch.setenv("KTX_TEST_SLEEP", "120")
    run_id = _launch(instance, "sleepy")
    run = _wait(instance, run_id, lambda r: _step_started(instance, r.run_id), "in its step")
    os.kill(int(run.tags[PID_TAG]), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while WarmRunLauncher().check_run_worker_health(run).status == WorkerStatus.RUNNING:
        assert time.monotonic() < deadline, "the killed process still looks alive"
        time.sleep(0.1)
    run = instance.get_run_by_id(run_id)
    assert run.status == dg.DagsterRunStatus.STARTED
    return run


def _run_end_message(instance, run_id: str, event_type) -> str:
    (event,) = instance.all_logs(run_id, of_type=event_type)
    return event.dagster_event.message


@pytest.mark.reliability(
    "fault", case="terminating a run whose process is gone",
    injected="the run process SIGKILLed in its step, then Terminate (the UI's button: the launcher's terminate)",
    seen="the run is CANCELED at once: 'its run process <pid> was already gone (killed or crashed); marked canceled'",
    outcome="no run left in CANCELING forever; terminate returns, no exception")
def test_terminating_a_run_whose_process_is_gone_cancels_it_at_once(instance, monkeypatch):
    run = _kill_in_step(instance, monkeypatch)
    assert instance.run_launcher.terminate(run.run_id) is True
    run = instance.get_run_by_id(run.run_id)  # at once: nothing is left to answer a signal
    assert run.status == dg.DagsterRunStatus.CANCELED
    message = _run_end_message(instance, run.run_id, dg.DagsterEventType.RUN_CANCELED)
    assert f"its run process {run.tags[PID_TAG]} was already gone (killed or crashed); marked canceled" in message


@pytest.mark.reliability(
    "fault", case="terminating a run whose process was never recorded",
    injected="a STARTED run that no process of this launcher holds (no pid, no code server), then Terminate",
    seen="the run is CANCELED at once: 'no run process was ever recorded for it ... nothing was left to stop'",
    outcome="no run left in CANCELING forever; terminate returns, no exception")
def test_terminating_a_run_with_no_recorded_process_cancels_it(instance):
    run = _create(instance, "sleepy", status=dg.DagsterRunStatus.STARTED)
    assert PID_TAG not in run.tags
    assert instance.run_launcher.terminate(run.run_id) is True
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.CANCELED
    message = _run_end_message(instance, run.run_id, dg.DagsterEventType.RUN_CANCELED)
    assert "no run process was ever recorded for it" in message, message
    assert not instance.run_launcher.terminate(run.run_id)  # over


def test_health_of_a_run_without_a_recorded_process(instance):
    """Run monitoring fails what the health check does not call RUNNING: a STARTED run no
    process ever claimed is UNKNOWN (failed), one launched through its code server (the
    fallback for another Python) is not this launcher's to judge."""
    orphan = _create(instance, "sleepy", status=dg.DagsterRunStatus.STARTED)
    health = instance.run_launcher.check_run_worker_health(orphan)
    assert (health.status, health.msg) == (WorkerStatus.UNKNOWN, "no run process was ever recorded for this run")
    from dagster._core.storage.tags import GRPC_INFO_TAG

    assert CODE_SERVER_TAG == GRPC_INFO_TAG  # the tag Dagster's DefaultRunLauncher sets
    fallback = _create(instance, "sleepy", status=dg.DagsterRunStatus.STARTED, tags={GRPC_INFO_TAG: "{}"})
    assert instance.run_launcher.check_run_worker_health(fallback).status == WorkerStatus.RUNNING


@pytest.mark.reliability(
    "fault", case="a run process killed under the daemon",
    injected="a run launched by the WarmRunLauncher, SIGKILLed in its step; a real dagster-daemon with run "
             "monitoring enabled in dagster.yaml (poll every second)",
    seen="the run FAILURE, from the daemon: 'Detected run worker status ... run process <pid> is gone. Marking "
         "run ... as failed.'",
    outcome="the run does not stay STARTED; its partition can be re-run")
def test_the_daemons_run_monitoring_fails_a_killed_run(instance, monkeypatch, tmp_path):
    import subprocess
    import sys

    home = Path(os.environ["DAGSTER_HOME"])
    config = yaml.safe_load((home / "dagster.yaml").read_text())
    assert config["run_monitoring"]["enabled"] is True  # as deploy/local/dagster.yaml ships it
    config["run_monitoring"]["poll_interval_seconds"] = 1
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    run = _kill_in_step(instance, monkeypatch)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "dagster._daemon", "run", "--empty-workspace"],
        cwd=tmp_path, env={**os.environ, "KTX_MAX_CONCURRENT_RUNS": "2"},
        stdout=open(tmp_path / "daemon.log", "wb"), stderr=subprocess.STDOUT,
    )
    try:
        run = _wait(instance, run.run_id, lambda r: r.is_finished, "failed by the daemon", timeout=120)
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
    assert run.status == dg.DagsterRunStatus.FAILURE, (tmp_path / "daemon.log").read_text()[-3000:]
    message = _run_end_message(instance, run.run_id, dg.DagsterEventType.RUN_FAILURE)
    assert "Detected run worker status" in message and f"run process {run.tags[PID_TAG]} is gone" in message, message
    assert "Marking run" in message and "as failed" in message, message

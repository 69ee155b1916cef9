"""executors/local.py: a run that is a chain runs in its own process; parallel steps get one each."""

from __future__ import annotations

import pickle
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableRepository

from ktx_dagster.executors.local import is_chain

REPO = Path(__file__).resolve().parents[1]
DEFS = REPO / "tests" / "fixtures" / "run_defs.py"


def _job(selection: list[str]):
    recon_repo = ReconstructableRepository.for_file(str(DEFS), "defs", working_directory=str(REPO))
    keys = [dg.AssetKey(s) for s in selection]
    job_def = recon_repo.get_definition().get_implicit_job_def_for_assets(keys)
    return recon_repo.get_reconstructable_job(job_def.name), keys


def _run(instance, selection: list[str]):
    recon_job, keys = _job(selection)
    result = dg.execute_job(recon_job, instance=instance, asset_selection=keys)
    assert result.success
    # the default IO manager pickles each asset under the instance's storage dir
    values = {k.path[-1]: pickle.loads((Path(instance.storage_directory()) / k.path[-1]).read_bytes()) for k in keys}
    events = instance.all_logs(result.run_id)
    workers = [e.step_key for e in events if e.dagster_event and e.dagster_event.event_type_value == "STEP_WORKER_STARTED"]
    return workers, values


@pytest.fixture
def persistent_instance(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        yield instance


def test_chain_runs_in_the_run_process(persistent_instance, monkeypatch):
    monkeypatch.delenv("KTX_LOCAL_EXECUTOR", raising=False)
    workers, values = _run(persistent_instance, ["left", "after_left"])
    assert workers == []  # no step processes
    assert values["left"] == values["after_left"]


def test_parallel_steps_get_a_process_each(persistent_instance, monkeypatch):
    monkeypatch.delenv("KTX_LOCAL_EXECUTOR", raising=False)
    workers, values = _run(persistent_instance, ["left", "right"])
    assert sorted(workers) == ["left", "right"]
    assert values["left"] != values["right"]


def test_isolate_steps_forces_a_process_per_step(persistent_instance, monkeypatch):
    monkeypatch.setenv("KTX_LOCAL_EXECUTOR", "multiprocess")
    workers, values = _run(persistent_instance, ["left", "after_left"])
    assert sorted(workers) == ["after_left", "left"]
    assert values["left"] != values["after_left"]


def test_plan_shape():
    def plan(selection):
        from dagster._core.execution.api import create_execution_plan

        recon_job, keys = _job(selection)
        return create_execution_plan(recon_job.get_subset(asset_selection=set(keys)))

    assert is_chain(plan(["left"]))
    assert is_chain(plan(["left", "after_left"]))
    assert not is_chain(plan(["left", "right"]))


def test_unknown_mode_is_a_clear_error_when_the_code_loads(monkeypatch):
    from executors import executor_for

    monkeypatch.setenv("KTX_LOCAL_EXECUTOR", "threads")
    with pytest.raises(ValueError, match="KTX_LOCAL_EXECUTOR='threads' is not one of auto, multiprocess, in_process"):
        executor_for("local")


def test_a_local_retry_reruns_the_failed_step_and_succeeds(tmp_path):
    """`@transformation(retries=1)` locally: the first attempt raises, the executor retries the
    step in the same run, and the run succeeds (`ktx materialize`, a real run process)."""
    import os
    import subprocess
    import sys

    from dagster._core.instance.ref import InstanceRef

    env = {**os.environ, "KTX_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home"),
           "KTX_DEPLOYMENT": "local"}
    env.pop("KTX_LOCAL_EXECUTOR", None)
    (tmp_path / "data").mkdir()
    proc = subprocess.run([sys.executable, "-m", "ktx_dagster", "materialize", "-f", str(REPO / "tests" / "fixtures" / "fault_defs.py"),
                           "--select", "flaky"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "data" / "flaky" / "only.txt").read_text() == "succeeded on attempt 2"
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path / "home"))) as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        events = [e.dagster_event.event_type for e in instance.all_logs(run.run_id) if e.dagster_event]
    assert events.count(dg.DagsterEventType.STEP_UP_FOR_RETRY) == 1
    assert events.count(dg.DagsterEventType.STEP_RESTARTED) == 1
    assert events.count(dg.DagsterEventType.STEP_SUCCESS) == 1

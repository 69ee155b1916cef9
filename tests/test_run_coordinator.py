"""ktx_dagster/run_coordinator.py: Dagster's run queue with a sub-second dequeue tick.

The throughput effect is measured by bench/backfill.py; here: the shipped instance has it,
the daemon runs its loop at that interval, and a
bad interval is refused with the setting named. The limit of runs at once under the real
daemon is checked by tests/ui/test_ui_backfill.py.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._daemon.controller import create_daemon_of_type

from ktx_dagster.run_coordinator import RunQueue

REPO = Path(__file__).resolve().parents[1]


def _instance(tmp_path, monkeypatch, without: tuple[str, ...] = (), **queue_config) -> dg.DagsterInstance:
    """The shipped local instance, its queue settings changed by `queue_config`, `without` dropped."""
    config = yaml.safe_load((REPO / "deploy" / "local" / "dagster.yaml").read_text())
    config["run_coordinator"]["config"].update(queue_config)
    for setting in without:
        del config["run_coordinator"]["config"][setting]
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("KTX_MAX_CONCURRENT_RUNS", "2")
    return dg.DagsterInstance.get()


def test_the_shipped_queue_starts_runs_twice_a_second(tmp_path, monkeypatch):
    with _instance(tmp_path, monkeypatch) as instance:
        assert isinstance(instance.run_coordinator, RunQueue)
        assert instance.run_coordinator.dequeue_interval_seconds == 0.5
        # the daemon's loop takes its interval from the queue
        assert create_daemon_of_type("QUEUED_RUN_COORDINATOR", instance).interval_seconds == 0.5
        # Dagster's other settings pass through
        assert instance.run_coordinator.get_run_queue_config().max_concurrent_runs == 2
        assert instance.run_coordinator.dequeue_num_workers == 2


def test_without_an_interval_it_is_dagsters_default(tmp_path, monkeypatch):
    with _instance(tmp_path, monkeypatch, without=("dequeue_interval_seconds",)) as instance:
        assert instance.run_coordinator.dequeue_interval_seconds == dg.QueuedRunCoordinator().dequeue_interval_seconds


@pytest.mark.reliability(
    "bad input", case="a run queue interval of zero",
    injected="dequeue_interval_seconds: 0 in dagster.yaml's run_coordinator config",
    seen="'run_coordinator.config.dequeue_interval_seconds is 0: give a positive number of seconds ...' "
         "when the instance loads",
    outcome="refused before the daemon starts, instead of a daemon polling the run storage without pause")
def test_a_zero_interval_is_refused_naming_the_setting(tmp_path, monkeypatch):
    with pytest.raises(dg.DagsterInvalidConfigError, match="dequeue_interval_seconds is 0"):
        with _instance(tmp_path, monkeypatch, dequeue_interval_seconds=0) as instance:
            instance.run_coordinator  # noqa: B018 (loads it)

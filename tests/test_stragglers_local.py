"""A straggler outside Kubernetes: a task running past its expected duration is told once in
the run's log by its own process, with its pid and host (Kubernetes: tests/k8s/test_disruption.py)."""

from __future__ import annotations

import os
import socket
import time

import dagster as dg
import pytest

from ktx_dagster import transformation


@transformation(partitions=["a"], expected_duration=0.5)
def dawdles(context) -> int:
    time.sleep(2.5)
    return 1


@transformation(partitions=["a"], expected_duration=30)
def quick(context) -> int:
    return 1


def _straggler_events(instance, run_id):
    return [r for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
            if "ktx/straggler" in r.dagster_event.engine_event_data.metadata]


@pytest.mark.reliability(
    "pod failure", case="a straggler: a step running past its expected duration (local)",
    injected="@transformation(expected_duration=0.5) whose task sleeps 2.5s, run locally",
    seen="one engine event '<transformation>[<partition>] is still running after 0.5s, past its expected duration of "
         "0.5s ...; it runs as process <pid> on host <host>' with metadata ktx/elapsed_seconds, ktx/pid, ktx/host",
    outcome="told once; the task is not stopped and the run succeeds")
def test_a_local_straggler_is_told_once_with_its_process(monkeypatch):
    monkeypatch.delenv("KTX_STRAGGLERS_TOLD_BY", raising=False)
    with dg.instance_for_test() as instance:
        result = dg.materialize([dawdles], partition_key="a", instance=instance)
        assert result.success
        (told,) = _straggler_events(instance, result.run_id)
        metadata = told.dagster_event.engine_event_data.metadata
        assert metadata["ktx/pid"].value == os.getpid() and metadata["ktx/expected_seconds"].value == 0.5
        assert told.dagster_event.message == (
            f"dawdles[a] is still running after {metadata['ktx/elapsed_seconds'].value:.1f}s, past its expected "
            "duration of 0.5s (@transformation(expected_duration=...)); it runs as process "
            f"{os.getpid()} on host {socket.gethostname()}.")
        assert told.step_key == "dawdles"
        quick_run = dg.materialize([quick], partition_key="a", instance=instance)
        assert _straggler_events(instance, quick_run.run_id) == []  # on time: nothing said


def test_step_pods_leave_stragglers_to_the_executor(monkeypatch):
    monkeypatch.setenv("KTX_STRAGGLERS_TOLD_BY", "executor")
    with dg.instance_for_test() as instance:
        result = dg.materialize([dawdles], partition_key="a", instance=instance)
        assert result.success and _straggler_events(instance, result.run_id) == []

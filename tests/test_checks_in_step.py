"""`@transformation(checks=...)`: the rules run inside the transformation's own step, right after
its output is stored: one step (one process, one pod) per partition, the same check results."""

from __future__ import annotations

import dagster as dg
import pytest

from ktx_dagster import transformation
from ktx_dagster.checks import check, non_empty
from ktx_dagster.io_manager import data_resources

KEYS = ["a", "b", "bad"]


@check("no_bad_word", blocking=True)
def no_bad_word(value, ctx):
    return "bad" not in value, {"chars": len(value)}


@transformation(partitions=KEYS, checks=[non_empty(), no_bad_word], memory="100Mi")
def words(context) -> str:
    return f"{context.partition_key} words\n"


@transformation(partitions=KEYS, inputs={"text": "words"}, memory="100Mi")
def shout(text: str) -> str:
    return text.upper()


def _materialize(tmp_path, instance, key):
    return dg.materialize([words, shout], partition_key=key, instance=instance,
                          resources=data_resources(tmp_path), raise_on_error=False)


def test_checks_run_in_the_transformations_own_step(tmp_path, instance):
    result = _materialize(tmp_path, instance, "a")
    assert result.success
    steps = {e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_SUCCESS}
    assert steps == {"words", "shout"}  # no separate check step
    evaluations = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
                   for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION}
    assert set(evaluations) == {"non_empty", "no_bad_word"}
    assert all(ev.passed for ev in evaluations.values())
    assert evaluations["no_bad_word"].metadata["partition"].value == "a"
    # the output was stored before the rules ran: the event order is the promise
    kinds = [e.event_type for e in result.all_events if e.step_key == "words"]
    assert kinds.index(dg.DagsterEventType.ASSET_MATERIALIZATION) < kinds.index(
        dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    assert (tmp_path / "words" / "a.txt").read_text() == "a words\n"


def test_a_failed_blocking_check_fails_the_step_and_skips_downstream(tmp_path, instance):
    result = _materialize(tmp_path, instance, "bad")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert failure.step_key == "words" and "no_bad_word" in str(failure.step_failure_data.error.message)
    assert not any(e.step_key == "shout" and e.event_type == dg.DagsterEventType.STEP_SUCCESS
                   for e in result.all_events)
    record = instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(dg.AssetKey("words"), "no_bad_word"))
    assert record is not None and record.event.dagster_event.asset_check_evaluation_data.passed is False
    # the other partitions are untouched and still pass
    assert _materialize(tmp_path, instance, "b").success


def test_checks_need_the_value_returned():
    @transformation(partitions=KEYS, checks=[non_empty()])
    def returns_result(context):
        return dg.MaterializeResult()

    with pytest.raises(TypeError, match="checks= needs the task to return its output"):
        dg.materialize([returns_result], partition_key="a", resources=data_resources())

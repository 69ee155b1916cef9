"""The sensor and check builders on their own, in-process (no webserver or daemon): fast."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd
import pytest
from upath import UPath

from ktx_dagster import ChunkedPartitions, FilePartitions, transformation
from ktx_dagster.checks import (
    Check,
    CheckContext,
    check,
    evaluate,
    has_columns,
    in_range,
    non_empty,
    output_checks,
    row_count,
    unique,
)
from ktx_dagster.sensors import file_partitions_sensor, file_sensors
from ktx_dagster.data_dir import DataDir
from ktx_dagster.io_manager import data_resources

pytestmark = pytest.mark.ui

FILES = FilePartitions(name="t_files", directory="in", pattern="f_*.txt")


def _touch(root, *keys):
    (root / "in").mkdir(parents=True, exist_ok=True)
    for key in keys:
        (root / "in" / f"{key}.txt").write_text(key)


def _tick(sensor, instance, cursor):
    result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources={"data_dir": DataDir()}))
    for request in result.dynamic_partitions_requests:  # what the daemon does with them
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def test_sensor_adds_new_files_only_and_never_deletes(tmp_path, monkeypatch, instance):
    monkeypatch.setenv("KTX_DATA_DIR", str(tmp_path))
    sensor = file_partitions_sensor(FILES, [dg.AssetKey("a"), dg.AssetKey("b")], minimum_interval_seconds=5)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 5
    _touch(tmp_path, "f_1", "f_2")
    instance.add_dynamic_partitions("t_files", ["f_1"])  # registered by `sync` before the sensor ran

    first = _tick(sensor, instance, None)
    # f_1 was there before the sensor: adopted, not re-run. f_2 is new.
    assert [r.partition_key for r in first.run_requests] == ["f_2"]
    assert first.run_requests[0].asset_selection == [dg.AssetKey("a"), dg.AssetKey("b")]
    assert first.run_requests[0].run_key == "f_2"
    assert [list(r.partition_keys) for r in first.dynamic_partitions_requests] == [["f_2"]]
    assert json.loads(first.cursor)["keys"] == ["f_1", "f_2"]

    quiet = _tick(sensor, instance, first.cursor)
    assert not quiet.run_requests and quiet.skip_reason

    _touch(tmp_path, "f_10")
    (tmp_path / "in" / "f_1.txt").unlink()
    third = _tick(sensor, instance, quiet.cursor)
    assert [r.partition_key for r in third.run_requests] == ["f_10"]
    assert not any(isinstance(r, dg.DeleteDynamicPartitionsRequest) for r in third.dynamic_partitions_requests)
    assert instance.get_dynamic_partitions("t_files") == ["f_1", "f_2", "f_10"]

    _touch(tmp_path, "f_1")  # back again: already handled, no new run
    assert not _tick(sensor, instance, third.cursor).run_requests


def test_sensor_registers_chunks_of_its_files(tmp_path, monkeypatch, instance):
    monkeypatch.setenv("KTX_DATA_DIR", str(tmp_path))
    chunks = ChunkedPartitions(name="t_chunks", upstream=FILES, size=2)

    @transformation(partitions=FILES)
    def per_file(context) -> str:
        return context.partition_key

    @transformation(partitions=chunks)
    def per_chunk(context) -> str:
        return context.partition_key

    (sensor,) = file_sensors([per_file, per_chunk], [FILES, chunks], default_status=dg.DefaultSensorStatus.STOPPED)
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    _touch(tmp_path, "f_1", "f_2", "f_3")
    result = _tick(sensor, instance, None)
    assert [r.partition_key for r in result.run_requests] == ["f_1", "f_2", "f_3"]
    assert all(r.asset_selection == [dg.AssetKey("per_file")] for r in result.run_requests)
    assert instance.get_dynamic_partitions("t_chunks") == ["0", "1"]


def _ctx(partition: str | None = "p") -> CheckContext:
    return CheckContext(dg.AssetKey("x"), partition, UPath("/tmp"), dg.get_dagster_logger())


def _results(checks: list[Check], value) -> dict[str, dg.AssetCheckResult]:
    return {r.check_name: r for r in evaluate(checks, value, _ctx())}


def test_check_builders_on_a_table():
    frame = pd.DataFrame({"pid": [1, 2, 2], "score": [0.5, 1.5, None], "name": ["a", "b", "c"]})
    got = _results(
        [
            non_empty(),
            row_count(min=1, max=2),
            has_columns({"pid": "int64", "score": "float64", "missing": None}),
            unique("pid"),
            unique("name"),
            in_range("score", min=0, max=1),
            in_range("pid", min=1, max=2, name="pid_ok"),
        ],
        frame,
    )
    assert got["non_empty"].passed and got["non_empty"].metadata["rows"].value == 3
    assert not got["row_count"].passed
    assert not got["schema"].passed and got["schema"].metadata["missing"].value == "missing"
    assert not got["unique_pid"].passed and got["unique_pid"].metadata["duplicated_rows"].value == 2
    assert got["unique_name"].passed
    score = got["score_in_range"]
    assert not score.passed and score.metadata["outside"].value == 1 and score.metadata["nulls"].value == 1
    assert got["pid_ok"].passed
    assert all(r.metadata["partition"].value == "p" for r in got.values())


def test_check_errors_become_failed_results_and_custom_checks():
    @check("custom", "pids are positive")
    def positive(value, ctx):
        return dg.AssetCheckResult(passed=bool((value["pid"] > 0).all()), metadata={"n": len(value)})

    got = _results([unique("nope"), positive, non_empty().warn()], pd.DataFrame({"pid": [1]}))
    assert not got["unique_nope"].passed and "KeyError" in got["unique_nope"].metadata["error"].value
    assert got["custom"].passed and got["custom"].asset_key == dg.AssetKey("x")
    assert got["non_empty"].severity == dg.AssetCheckSeverity.WARN
    assert not _results([non_empty()], "")["non_empty"].passed


def test_output_checks_read_each_stored_partition(tmp_path, instance):
    parts = dg.StaticPartitionsDefinition(["good", "bad"])

    @transformation(partitions=parts)
    def table(context) -> pd.DataFrame:
        pids = [1, 2, 3] if context.partition_key == "good" else [1, 1]
        return pd.DataFrame({"pid": pids})

    checks = output_checks(table, non_empty(), unique("pid").blocks(), has_columns(["pid"], exact=True))
    resources = data_resources(tmp_path)
    outcome = {}
    for key in ("good", "bad"):
        result = dg.materialize(
            [table, checks], partition_key=key, resources=resources, instance=instance, raise_on_error=False
        )
        # A blocking check that fails fails its step, so the run (and the backfill's partition).
        assert result.success == (key == "good")
        outcome[key] = {e.check_name: (e.passed, e.partition) for e in result.get_asset_check_evaluations()}
    assert outcome["good"] == {"non_empty": (True, "good"), "unique_pid": (True, "good"), "schema": (True, "good")}
    assert outcome["bad"]["unique_pid"] == (False, "bad")
    spec = next(s for s in checks.check_specs if s.name == "unique_pid")
    assert spec.blocking and spec.partitions_def == parts

"""Many file partitions: registered in batches under SQLite's limit on bound variables, the
registered keys read once per sync, a bounded sensor tick, and the warning that a SQLite
instance holds more partitions than it serves well (docs/scale.md, bench/partition_scale.py).

SQLite's limit is lowered for these tests (Debian builds it at 250,000, SQLite's own default
is 32,766, as on macOS), and the batch size with it, so that a few hundred files exercise what
tens of thousands do on a user's laptop.
"""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from upath import UPath

from ktx_dagster import ChunkedPartitions, FilePartitions, partitions
from ktx_dagster.cli import main as ktx_main
from ktx_dagster.data_dir import DataDir
from ktx_dagster.sensors import file_partitions_sensor

FILES = FilePartitions("scale_files", "in", "part_*.txt")
VARIABLES = 100  # SQLite's bound variables per statement, for these tests
BATCH = 40


@pytest.fixture
def few_sqlite_variables(monkeypatch):
    """Every SQLite connection opened during the test allows VARIABLES bound variables."""

    def limit(dbapi_connection, _record):
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, VARIABLES)

    sa.event.listen(sa.engine.Engine, "connect", limit)
    monkeypatch.setattr(partitions, "REGISTER_BATCH", BATCH)
    yield
    sa.event.remove(sa.engine.Engine, "connect", limit)


def _files(root, n: int, start: int = 0) -> list[str]:
    (root / "in").mkdir(parents=True, exist_ok=True)
    keys = [f"part_{i}" for i in range(start, start + n)]
    for key in keys:
        (root / "in" / f"{key}.txt").touch()
    return keys


def test_one_add_of_more_keys_than_sqlite_variables_fails(few_sqlite_variables, instance):
    # What the batches avoid (dagster-io/dagster#16260): Dagster's own add, all keys at once.
    with pytest.raises(sa.exc.OperationalError, match="too many SQL variables"):
        instance.add_dynamic_partitions("scale_files", [f"k{i}" for i in range(3 * VARIABLES)])


def test_sync_registers_more_files_than_sqlite_variables(few_sqlite_variables, instance, tmp_path):
    keys = _files(tmp_path, 3 * VARIABLES)
    assert sorted(FILES.sync(instance, UPath(tmp_path))) == sorted(keys)
    assert len(instance.get_dynamic_partitions("scale_files")) == 3 * VARIABLES
    more = _files(tmp_path, VARIABLES, start=3 * VARIABLES)
    assert FILES.register(instance, UPath(tmp_path)) == (partitions.natural_sorted(more), 4 * VARIABLES)


def test_chunks_of_many_files_are_registered_in_batches(few_sqlite_variables, instance, tmp_path):
    _files(tmp_path, 3 * VARIABLES)
    chunks = ChunkedPartitions("scale_chunks", FILES, size=2)  # 150 chunk keys: more than VARIABLES too
    assert chunks.register(instance, UPath(tmp_path)).total == 3 * VARIABLES // 2
    assert instance.get_dynamic_partitions("scale_chunks")[-1] == str(3 * VARIABLES // 2 - 1)


def test_sync_reads_the_registered_keys_once(instance, tmp_path, monkeypatch):
    _files(tmp_path, 5)
    reads = []
    real = instance.get_dynamic_partitions
    monkeypatch.setattr(instance, "get_dynamic_partitions", lambda name: reads.append(name) or real(name))
    from ktx_dagster import cli

    location = _location(tmp_path)
    monkeypatch.setenv("KTX_DATA_DIR", str(tmp_path))
    cli.sync(location, instance, log=lambda _: None)
    assert reads == ["scale_files"]  # all keys of the source, once, however many there are


def _tick(sensor, instance, cursor):
    """One tick, its requests applied as the sensor daemon applies them (1.13): the keys of
    each request not yet registered, in one add_dynamic_partitions call."""
    result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources={"data_dir": DataDir()}))
    for request in result.dynamic_partitions_requests:
        missing = [k for k in request.partition_keys if not instance.has_dynamic_partition(request.partitions_def_name, k)]
        instance.add_dynamic_partitions(request.partitions_def_name, missing)
    return result


def test_sensor_registers_more_files_than_sqlite_variables(few_sqlite_variables, instance, tmp_path, monkeypatch):
    monkeypatch.setenv("KTX_DATA_DIR", str(tmp_path))
    keys = _files(tmp_path, 3 * VARIABLES)
    sensor = file_partitions_sensor(FILES, [dg.AssetKey("a")], max_runs_per_tick=10_000)
    result = sensor(dg.build_sensor_context(instance=instance, resources={"data_dir": DataDir()}))
    # More than a batch: registered by the tick itself, in batches, not left to the daemon's
    # check of each key
    assert not result.dynamic_partitions_requests
    assert sorted(instance.get_dynamic_partitions("scale_files")) == sorted(keys)
    assert len(result.run_requests) == len(keys)


def test_a_batch_of_new_files_or_fewer_is_the_ticks_request(few_sqlite_variables, instance, tmp_path, monkeypatch):
    monkeypatch.setenv("KTX_DATA_DIR", str(tmp_path))
    keys = _files(tmp_path, BATCH)
    sensor = file_partitions_sensor(FILES, [dg.AssetKey("a")])
    result = sensor(dg.build_sensor_context(instance=instance, resources={"data_dir": DataDir()}))
    assert [sorted(r.partition_keys) for r in result.dynamic_partitions_requests] == [sorted(keys)]
    assert not instance.get_dynamic_partitions("scale_files")  # the daemon adds them


def test_a_tick_requests_at_most_max_runs_and_the_next_ticks_the_rest(instance, tmp_path, monkeypatch):
    monkeypatch.setenv("KTX_DATA_DIR", str(tmp_path))
    keys = _files(tmp_path, 5)
    sensor = file_partitions_sensor(FILES, [dg.AssetKey("a")], max_runs_per_tick=2)
    cursor, ran = None, []
    for expected in (2, 2, 1, 0):
        result = _tick(sensor, instance, cursor)
        assert len(result.run_requests) == expected
        ran += [r.partition_key for r in result.run_requests]
        cursor = result.cursor
        # every file is a partition from the first tick on: a backfill can take them all
        assert len(instance.get_dynamic_partitions("scale_files")) == 5
    assert ran == keys  # each file once, in natural order


def test_a_quiet_tick_does_not_read_the_registered_keys(instance, tmp_path, monkeypatch):
    monkeypatch.setenv("KTX_DATA_DIR", str(tmp_path))
    _files(tmp_path, 3)
    sensor = file_partitions_sensor(FILES, [dg.AssetKey("a")])
    first = _tick(sensor, instance, None)

    def no_reads(name):
        raise AssertionError(f"a quiet tick read every key of {name!r}")

    monkeypatch.setattr(instance, "get_dynamic_partitions", no_reads)
    quiet = _tick(sensor, instance, first.cursor)
    assert quiet.skip_reason and not quiet.run_requests
    assert quiet.cursor == first.cursor


# --- the warning past SQLITE_PARTITIONS_WARN ------------------------------------------------------

LOCATION = """
import dagster as dg
from ktx_dagster import FilePartitions, definitions_for, transformation

FILES = FilePartitions("scale_files", "in", "part_*.txt")


@transformation(partitions=FILES)
def per_file(context) -> str:
    return context.partition_key


defs = definitions_for(assets=[per_file], deployment="local")
"""


def _location(tmp_path):
    from ktx_dagster.code_location import resolve

    path = tmp_path / "location.py"
    path.write_text(textwrap.dedent(LOCATION))
    (location,) = resolve(file=str(path))
    return location


def _cli_sync(tmp_path, monkeypatch, capsys) -> str:
    path = tmp_path / "location.py"
    path.write_text(textwrap.dedent(LOCATION))
    monkeypatch.setenv("KTX_DATA_DIR", str(tmp_path))
    assert ktx_main(["sync", "-f", str(path)]) == 0
    return capsys.readouterr().err


def test_sync_on_sqlite_past_the_threshold_tells_how_to_switch(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KTX_SQLITE_PARTITIONS_WARN", "4")
    _files(tmp_path, 4)
    with dg.instance_for_test() as instance:
        monkeypatch.setenv("DAGSTER_HOME", instance.root_directory)
        assert "warning" not in _cli_sync(tmp_path, monkeypatch, capsys)  # at the threshold: quiet
        _files(tmp_path, 1, start=4)
        err = _cli_sync(tmp_path, monkeypatch, capsys)
    assert "partitions 'scale_files': 5 on a SQLite instance, more than the 4" in err
    assert "deploy/minikube/dagster.yaml" in err and "DAGSTER_PG_HOST" in err


def test_the_default_threshold_is_the_one_documented():
    assert partitions.SQLITE_PARTITIONS_WARN == 20_000
    assert "20,000" in (Path(__file__).parents[1] / "docs" / "scale.md").read_text()


def test_sensor_on_sqlite_past_the_threshold_warns(instance, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("KTX_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KTX_SQLITE_PARTITIONS_WARN", "2")
    _files(tmp_path, 2)
    sensor = file_partitions_sensor(FILES, [dg.AssetKey("a")])
    first = _tick(sensor, instance, None)
    assert "WARNING" not in capfd.readouterr().err  # at the threshold: quiet
    _files(tmp_path, 1, start=2)
    _tick(sensor, instance, first.cursor)
    warning = [line for line in capfd.readouterr().err.splitlines() if "WARNING" in line]
    assert warning and "3 on a SQLite instance, more than the 2" in warning[0]
    assert "deploy/minikube/dagster.yaml" in warning[0]


def test_no_warning_on_postgres(tmp_path, monkeypatch):
    from ktx_dagster.testing.pytest_plugin import postgres_or_skip

    monkeypatch.setenv("KTX_SQLITE_PARTITIONS_WARN", "2")
    with postgres_or_skip() as server:
        url = server.url.replace("postgresql://", "postgresql+psycopg2://")
        overrides = {"storage": {"postgres": {"postgres_url": url}}}
        with dg.instance_for_test(overrides=overrides) as instance:
            assert not partitions.instance_is_sqlite(instance)
            assert partitions.sqlite_scale_warning(instance, "scale_files", 3) is None
    with dg.instance_for_test() as instance:
        assert partitions.sqlite_scale_warning(instance, "scale_files", 3)


@pytest.mark.heavy
def test_sync_and_sensor_register_40000_files_under_sqlites_default_limit(tmp_path, monkeypatch):
    """The size users hit (~36,000, dagster-io/dagster#16260), at SQLite's own default limit."""

    def limit(dbapi_connection, _record):
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32766)

    sa.event.listen(sa.engine.Engine, "connect", limit)
    try:
        keys = _files(tmp_path / "cli", 40_000)
        with dg.instance_for_test() as instance:
            assert FILES.register(instance, UPath(tmp_path / "cli")).total == len(keys)
        _files(tmp_path / "sensor", 40_000)
        monkeypatch.setenv("KTX_DATA_DIR", str(tmp_path / "sensor"))
        with dg.instance_for_test() as instance:
            sensor = file_partitions_sensor(FILES, [dg.AssetKey("a")])
            result = _tick(sensor, instance, None)
            assert len(instance.get_dynamic_partitions("scale_files")) == 40_000
            assert len(result.run_requests) == 1000
    finally:
        sa.event.remove(sa.engine.Engine, "connect", limit)

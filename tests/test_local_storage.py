"""ktx_dagster/local_storage.py: Dagster's SQLite storage with connections kept open.

What must hold: the files are Dagster's own (a home written by either storage reads with the
other), a commit survives its process being killed, another process sees events while the
writer's connection is still open, the UI's live watch of a run is woken by events that sit in
the write-ahead log, and a run database made from the template is the one Dagster makes.
The internals it overrides keep their shape (an upgrade that changes them fails here).
"""

from __future__ import annotations

import inspect
import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorageWatchdog
from dagster._core.storage.runs import SqliteRunStorage
from dagster._core.storage.schedules import SqliteScheduleStorage

from ktx_dagster.local_storage import LocalEventLogStorage, LocalRunStorage, LocalScheduleStorage

REPO = Path(__file__).resolve().parents[1]


@dg.asset
def number() -> int:
    return 1


def _wait_for(path: str) -> None:
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)


@dg.asset
def waits_for_two_files(context) -> int:
    _wait_for(os.environ["KTX_TEST_GO"] + "1")
    context.log.info("halfway")
    _wait_for(os.environ["KTX_TEST_GO"] + "2")
    return 2


def _home(tmp_path: Path, *, ours: bool) -> Path:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    config = yaml.safe_load((REPO / "deploy" / "local" / "dagster.yaml").read_text())
    if not ours:  # Dagster's default SQLite storage
        config.pop("run_storage")
        config.pop("event_log_storage")
        config.pop("schedule_storage")
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = _home(tmp_path, ours=True)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("KTX_MAX_CONCURRENT_RUNS", "2")
    return home


def _instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.get()


def test_the_shipped_local_instance_uses_it(home):
    with _instance() as instance:
        assert isinstance(instance.run_storage, LocalRunStorage)
        assert isinstance(instance.event_log_storage, LocalEventLogStorage)
        assert isinstance(instance.schedule_storage, LocalScheduleStorage)
        # Dagster's own layout under DAGSTER_HOME
        assert Path(instance.event_log_storage._base_dir) == home / "history" / "runs"
        assert Path(instance.run_storage._conn_string.removeprefix("sqlite:///")) == \
            home / "history" / "runs.db"


def _materialize(instance, *assets) -> str:
    result = dg.materialize(list(assets), instance=instance)
    assert result.success
    return result.run_id


def test_a_home_written_by_either_storage_reads_with_the_other(tmp_path, monkeypatch):
    monkeypatch.setenv("KTX_MAX_CONCURRENT_RUNS", "2")
    monkeypatch.setenv("DAGSTER_HOME", str(_home(tmp_path, ours=False)))
    with _instance() as instance:
        assert type(instance.event_log_storage) is SqliteEventLogStorage
        by_dagster = _materialize(instance, number)
    _home(tmp_path, ours=True)
    with _instance() as instance:
        assert isinstance(instance.event_log_storage, LocalEventLogStorage)
        assert instance.get_run_by_id(by_dagster).status == dg.DagsterRunStatus.SUCCESS
        assert instance.get_latest_materialization_event(dg.AssetKey("number")).run_id == by_dagster
        by_us = _materialize(instance, number)
    _home(tmp_path, ours=False)
    with _instance() as instance:
        assert type(instance.event_log_storage) is SqliteEventLogStorage
        assert [r.run_id for r in instance.get_runs()] == [by_us, by_dagster]
        assert instance.get_latest_materialization_event(dg.AssetKey("number")).run_id == by_us
        assert len(instance.all_logs(by_us)) == len(instance.all_logs(by_dagster))


def _schema(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        tables = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        mode = conn.execute("PRAGMA journal_mode").fetchone()
    return [*tables, *revision, mode]


def test_a_run_database_from_the_template_is_the_one_dagster_makes(tmp_path):
    ours = LocalEventLogStorage(str(tmp_path / "ours"))
    dagster = SqliteEventLogStorage(str(tmp_path / "dagster"))
    for storage in (ours, dagster):
        with storage.run_connection("r1"):
            pass
        storage.dispose()
    assert (tmp_path / "ours" / ".ktx" / f"empty-run-{dg.__version__}.db").exists()
    assert _schema(tmp_path / "ours" / "r1.db") == _schema(tmp_path / "dagster" / "r1.db")
    assert ours.get_all_run_ids() == ["r1"]  # the template is no run


def _store_events_then_die(home: str, ready) -> None:
    os.environ["DAGSTER_HOME"] = home
    instance = dg.DagsterInstance.get()
    run_id = _materialize(instance, number)
    ready.send(run_id)
    time.sleep(60)  # killed here, connections open, nothing disposed


@pytest.mark.reliability(
    "fault", case="the local run history's process killed with events unflushed",
    injected="SIGKILL of a process that stored a run's events with the local SQLite storage (connections "
             "still open, commits not flushed to disk, nothing disposed)",
    seen="nothing: the run and its events read back from another process",
    outcome="no event lost: synchronous=NORMAL in WAL mode keeps every commit through a process crash")
def test_a_commit_survives_its_process_being_killed(home):
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=_store_events_then_die, args=(str(home), theirs))
    proc.start()
    assert ours.poll(120), "the child stored no run"
    run_id = ours.recv()
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert list((home / "history" / "runs").glob(f"{run_id}.db-wal")), "nothing was left unflushed to test"
    with _instance() as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
        kinds = [e.dagster_event.event_type for e in instance.all_logs(run_id) if e.dagster_event]
        assert kinds[-1] == dg.DagsterEventType.RUN_SUCCESS
        assert dg.DagsterEventType.ASSET_MATERIALIZATION in kinds


def _run_waiting(home: str, go: str, started) -> None:
    os.environ.update(DAGSTER_HOME=home, KTX_TEST_GO=go)
    with dg.DagsterInstance.get() as instance:
        run = dg.materialize([waits_for_two_files], instance=instance, tags={"test": "live"})
        started.send(run.run_id)


def test_the_live_watch_of_a_run_sees_events_still_in_the_write_ahead_log(home, tmp_path):
    """The UI's run page follows a run through the event log's watch: it must be woken by an
    event while the run's process still holds its connection (no checkpoint touched the .db)."""
    go = tmp_path / "go"
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=_run_waiting, args=(str(home), str(go), theirs))
    proc.start()
    try:
        with _instance() as instance:
            deadline = time.monotonic() + 60
            while not instance.get_runs() and time.monotonic() < deadline:
                time.sleep(0.1)
            (run,) = instance.get_runs()
            halfway = threading.Event()

            def callback(entry, _cursor):
                if entry.user_message == "halfway":
                    halfway.set()

            instance.event_log_storage.watch(run.run_id, None, callback)
            Path(f"{go}1").touch()  # the run logs "halfway", then waits for go2
            assert halfway.wait(20), "the watch was not woken by an event of the running run"
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
            instance.event_log_storage.end_watch(run.run_id, callback)
        Path(f"{go}2").touch()
        assert ours.poll(30) and ours.recv() == run.run_id
    finally:
        Path(f"{go}2").touch()
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()


def test_the_internals_it_extends_keep_their_shape():
    """local_storage.py overrides these Dagster internals; a change of shape fails here first."""
    assert list(inspect.signature(SqliteEventLogStorage._connect).parameters) == ["self", "shard"]
    assert list(inspect.signature(SqliteEventLogStorage._initdb).parameters) == ["self", "engine", "for_index_shard"]
    for storage_class in (SqliteRunStorage, SqliteScheduleStorage):
        assert list(inspect.signature(storage_class.connect).parameters) == ["self"]
        assert list(inspect.signature(storage_class.from_local).parameters) == ["base_dir", "inst_data"]
        assert list(inspect.signature(storage_class.__init__).parameters)[:3] == ["self", "conn_string", "inst_data"]
    assert list(inspect.signature(SqliteEventLogStorageWatchdog.__init__).parameters)[:5] == \
        ["self", "event_log_storage", "run_id", "callback", "cursor"]
    assert "_process_log" in vars(SqliteEventLogStorageWatchdog)
    source = inspect.getsource(SqliteEventLogStorage.__init__)
    for attribute in ("self._db_lock", "self._initialized_dbs", "self._watchers", "self._obs", "self._base_dir"):
        assert attribute in source, attribute
    assert "self._conn_string" in inspect.getsource(SqliteRunStorage.__init__)
    # Dagster sets a database up when it has no alembic stamp; a stamped one it leaves alone
    for setup in (SqliteRunStorage.from_local, SqliteScheduleStorage.from_local, SqliteEventLogStorage._initdb):
        assert "if not (db_revision and head_revision):" in inspect.getsource(setup), setup

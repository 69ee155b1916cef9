"""The local instance's SQLite storage, at the cost of its work instead of a disk flush per event.

Dagster's SQLite storage (the default of every `DAGSTER_HOME` without a database) opens a new
connection for every statement and closes it again. In WAL mode, closing the last connection
to a database checkpoints it: a flush to disk for each of the ~30 events a one-partition run
writes, ~80 flushes in all, and a new run's event database is built with `CREATE TABLE`s and
an alembic stamp (0.35 s). On this project's 2-core machine that was 1.5 s of a 2.3 s run
(profile in bench/run_overhead.py).

These subclasses keep Dagster's files, schema and layout (a `DAGSTER_HOME` written by either
reads with the other) and change three things:

- one connection per database, kept open for the life of the process (a small LRU of run
  databases in a long-lived webserver), so nothing checkpoints per statement;
- `PRAGMA synchronous=NORMAL`: in WAL mode a commit survives the process being killed (it is
  in the OS's page cache); only a power loss or kernel crash can lose the last commits, and
  the database stays consistent. That is the right trade for a laptop's run history; a
  shared deployment (Minikube, EKS) uses PostgreSQL, untouched by this;
- a new run's database is a copy of an empty one made once per Dagster version, and a
  database Dagster has set up already (stamped with an alembic revision, which is all Dagster
  itself checks) is not checked again through alembic, which parses every migration script
  each time (4 times per run process, 0.05 s each).

The UI follows a live run by watching its database file; events now land in its `-wal` file
first, so the watch looks at both.

Without a `base_dir`, each process finds the files under its own DAGSTER_HOME (Dagster's
default writes the absolute folders into the instance ref instead): processes that share the
instance must share DAGSTER_HOME, as the CLI's, the daemon's and the webserver's run and step
processes do. Step pods of a cluster use PostgreSQL (deploy/minikube/dagster.yaml).
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.pool import QueuePool

from ktx_dagster.compat import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    ConfigurableClassData,
    SqliteEventLogStorage,
    SqliteEventLogStorageWatchdog,
    SqliteRunStorage,
    SqliteScheduleStorage,
    create_db_conn_string,
)

# Run databases a process keeps open at once: a run writes to its own (and the index); the
# webserver reads many, so the least recently used are closed.
OPEN_RUN_DATABASES = 16


def _history_dir(*parts: str) -> str:
    """Where Dagster's default SQLite storage keeps its files under DAGSTER_HOME."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise dg.DagsterInvariantViolationError(
            "ktx_dagster.local_storage needs a base_dir in dagster.yaml or DAGSTER_HOME set"
        )
    return os.path.join(os.path.abspath(home), "history", *parts)


def _engine(conn_string: str, pool_size: int) -> sa.Engine:
    engine = sa.create_engine(
        conn_string,
        poolclass=QueuePool,
        pool_size=pool_size,
        max_overflow=8,
        # WAL databases are shared by processes; threads of one process share its pool
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
    )

    @sa.event.listens_for(engine, "connect")
    def _no_flush_per_commit(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    return engine


class _ForkAware:
    """Engines made in one process are not used by a forked child (its pool would share the
    parent's open files): a child starts with none."""

    def _engines_of_this_process(self) -> dict:
        if getattr(self, "_ktx_pid", None) != os.getpid():
            for engine in getattr(self, "_ktx_engines", {}).values():
                engine.dispose(close=False)
            self._ktx_pid = os.getpid()
            self._ktx_engines = OrderedDict()
        return self._ktx_engines

    def _dispose_engines(self) -> None:
        for engine in self._engines_of_this_process().values():
            engine.dispose()
        self._ktx_engines.clear()


def _set_up_by_dagster(conn: sa.Connection, tables: tuple[str, ...] = ()) -> bool:
    """What Dagster's own set-up of a database checks: it is stamped with an alembic revision
    (any: upgrades are `dagster instance migrate`'s job), and has `tables`."""
    names = {row[0] for row in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "alembic_version" not in names or not set(tables) <= names:
        return False
    return conn.exec_driver_sql("SELECT version_num FROM alembic_version").first() is not None


class _OneDatabase(_ForkAware):
    """Run and schedule storage: one database, its connections kept open."""

    DATABASE: str
    TABLES: tuple[str, ...] = ()  # made by Dagster's from_local besides the schema

    @classmethod
    def config_type(cls):
        return {"base_dir": dg.Field(dg.StringSource, is_required=False,
                                     description="default: $DAGSTER_HOME/history, as Dagster's own")}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: dict):
        return cls.from_local(base_dir=config_value.get("base_dir") or cls.default_base_dir(), inst_data=inst_data)

    @classmethod
    def default_base_dir(cls) -> str:
        return _history_dir()

    @classmethod
    def from_local(cls, base_dir: str, inst_data: ConfigurableClassData | None = None):
        if os.path.exists(os.path.join(base_dir, f"{cls.DATABASE}.db")):
            storage = cls(create_db_conn_string(base_dir, cls.DATABASE), inst_data)
            with storage.connect() as conn:
                if _set_up_by_dagster(conn, cls.TABLES):
                    return storage
            storage.dispose()
        return super().from_local(base_dir, inst_data=inst_data)  # Dagster's set-up

    @contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        engines = self._engines_of_this_process()
        if self.DATABASE not in engines:
            engines[self.DATABASE] = _engine(self._conn_string, pool_size=2)
        with engines[self.DATABASE].connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        self._dispose_engines()
        super().dispose()


class LocalRunStorage(_OneDatabase, SqliteRunStorage):
    """Dagster's SQLite run storage (`history/runs.db`) with its connections kept open."""

    DATABASE = "runs"
    TABLES = ("runs", "instance_info")


class LocalScheduleStorage(_OneDatabase, SqliteScheduleStorage):
    """Dagster's SQLite schedule storage (`schedules/schedules.db`: sensor and backfill ticks)
    with its connections kept open."""

    DATABASE = "schedules"

    @classmethod
    def config_type(cls):
        return {"base_dir": dg.Field(dg.StringSource, is_required=False,
                                     description="default: $DAGSTER_HOME/schedules, as Dagster's own")}

    @classmethod
    def default_base_dir(cls) -> str:
        return os.path.join(os.path.dirname(_history_dir()), "schedules")


class LocalEventLogStorage(_ForkAware, SqliteEventLogStorage):
    """Dagster's run-sharded SQLite event log (`history/runs/<run id>.db` and `index.db`)
    with its connections kept open and new run databases copied from an empty one."""

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None):
        super().__init__(base_dir or _history_dir("runs"), inst_data=inst_data)

    @classmethod
    def config_type(cls):
        return {"base_dir": dg.Field(dg.StringSource, is_required=False,
                                     description="default: $DAGSTER_HOME/history/runs, as Dagster's own")}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: dict) -> LocalEventLogStorage:
        return cls(base_dir=config_value.get("base_dir"), inst_data=inst_data)

    # Dagster calls _connect for every statement, holding self._db_lock (so one at a time).
    @contextmanager
    def _connect(self, shard: str) -> Iterator[sa.Connection]:
        with self._db_lock:
            engines = self._engines_of_this_process()
            engine = engines.get(shard)
            if engine is None:
                if shard not in self._initialized_dbs:
                    self._create_from_template(shard)
                engine = engines[shard] = _engine(self.conn_string_for_shard(shard), pool_size=1)
                if shard not in self._initialized_dbs:
                    self._initdb(engine)  # an existing database: Dagster's own checks and stamp
                    self._initialized_dbs.add(shard)
                while len(engines) > OPEN_RUN_DATABASES:
                    engines.popitem(last=False)[1].dispose()
            engines.move_to_end(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _initdb(self, engine: sa.Engine, for_index_shard: bool = False) -> None:
        with engine.connect() as conn:
            if _set_up_by_dagster(conn, ("event_logs",)):
                return
        super()._initdb(engine, for_index_shard=for_index_shard)

    def _create_from_template(self, shard: str) -> None:
        """A missing run database becomes a copy of an empty one, made once per Dagster version
        in a folder of its own (Dagster lists runs by the *.db files of base_dir)."""
        path = self.path_for_shard(shard)
        if os.path.exists(path):
            return
        template_dir = os.path.join(self._base_dir, ".ktx")
        template = os.path.join(template_dir, f"empty-run-{dg.__version__}.db")
        if not os.path.exists(template):
            os.makedirs(template_dir, exist_ok=True)
            scratch = f"template-{uuid.uuid4().hex}"
            engine = sa.create_engine(create_db_conn_string(template_dir, scratch), poolclass=sa.pool.NullPool)
            self._initdb(engine)
            engine.dispose()  # the last connection closed: the WAL is folded into the file
            os.replace(os.path.join(template_dir, f"{scratch}.db"), template)
        scratch_copy = f"{path}.{uuid.uuid4().hex}.tmp"
        shutil.copyfile(template, scratch_copy)
        try:
            os.link(scratch_copy, path)  # never over a database another process just made
        except FileExistsError:
            pass
        finally:
            os.unlink(scratch_copy)

    def watch(self, run_id: str, cursor: str | None, callback) -> None:
        if not self._obs:
            from watchdog.observers import Observer

            self._obs = Observer()
            self._obs.start()
        watchdog = _RunDatabaseWatchdog(self, run_id, callback, cursor)
        self._watchers[run_id][callback] = (watchdog, self._obs.schedule(watchdog, self._base_dir, recursive=True))

    def dispose(self) -> None:
        with self._db_lock:
            self._dispose_engines()
        super().dispose()


class _RunDatabaseWatchdog(SqliteEventLogStorageWatchdog):
    """Dagster's watch of a run's database file, also woken by its write-ahead log."""

    def __init__(self, storage: LocalEventLogStorage, run_id: str, callback, cursor: str | None):
        super().__init__(storage, run_id, callback, cursor)
        self._lock = threading.Lock()  # a .db and a -wal change at once: read the run once at a time

    @property
    def patterns(self) -> list[str]:
        return [self._log_path, f"{self._log_path}-wal"]

    def on_modified(self, event) -> None:
        with self._lock:
            self._process_log()

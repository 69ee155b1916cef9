"""A throwaway PostgreSQL server for tests, from the distribution's own binaries.

``throwaway_postgres()`` runs ``initdb`` + ``pg_ctl`` from Debian's ``postgresql`` package
(``/usr/lib/postgresql/<version>/bin``, or ``KTX_PG_BIN``) in a fresh temporary directory,
listening on a free loopback port only, with password (SCRAM) authentication over TCP, a
superuser and a database both named ``dagster``. It yields a :class:`PostgresServer` and stops
and deletes everything on exit. Durability is switched off (``fsync=off``): it is a test
database.

PostgreSQL refuses to run as root. As root (CI, containers) the server runs as the
``postgres`` OS user that the Debian package creates, through ``runuser`` (or ``su``); as any
other user it runs as that user.

When the binaries are missing :func:`find_postgres_bin` returns None and the pytest fixture
skips with the apt command to run, unless ``KTX_REQUIRE_POSTGRES=1``, where it fails instead
(CI installs the package, so a missing server there is a broken setup, not a skip).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

__all__ = ["PostgresServer", "PostgresUnavailable", "find_postgres_bin", "throwaway_postgres", "MISSING_HINT"]

MISSING_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin "
    "(or KTX_PG_BIN): install them with `apt-get install postgresql` (Debian/Ubuntu)"
)


class PostgresUnavailable(RuntimeError):
    """No usable server binaries, or no way to run them (root without a `postgres` user)."""


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    database: str
    base_dir: Path
    bin_dir: Path

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    def dagster_env(self) -> dict[str, str]:
        """The env that deploy/minikube/dagster.yaml reads (DAGSTER_PG_*)."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.database,
        }

    def connect(self):  # -> psycopg2 connection
        import psycopg2

        return psycopg2.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=self.database
        )

    def create_database(self, name: str) -> PostgresServer:
        """A new, empty database on this server (same user); returns the server pointed at it."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"database name {name!r}: use [a-z_][a-z0-9_]*")
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                                dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return replace(self, database=name)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()


def _version_key(path: str) -> tuple[int, ...]:
    m = re.search(r"/postgresql/(\d+)(?:\.(\d+))?/bin$", path)
    return tuple(int(g) for g in m.groups() if g) if m else (0,)


def find_postgres_bin(env: Mapping[str, str] | None = None) -> Path | None:
    """The newest directory that has ``initdb`` and ``pg_ctl`` (``KTX_PG_BIN`` wins)."""
    env = os.environ if env is None else env
    candidates = [env["KTX_PG_BIN"]] if env.get("KTX_PG_BIN") else sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True
    )
    for cand in candidates:
        if all(os.access(os.path.join(cand, tool), os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(cand)
    return None


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _runner() -> tuple[list[str], str | None]:
    """argv prefix that runs a command as a non-root user, and that user (None: ourselves)."""
    if os.geteuid() != 0:
        return [], None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable(
            "running as root and there is no `postgres` OS user to run the server as "
            "(the Debian `postgresql` package creates it)"
        ) from None
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--"], "postgres"
    if shutil.which("su"):
        return ["__su__"], "postgres"
    raise PostgresUnavailable("running as root and neither `runuser` nor `su` is available")


def _run(prefix: list[str], argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    if prefix == ["__su__"]:
        import shlex

        cmd = ["su", "-s", "/bin/sh", "postgres", "-c", " ".join(shlex.quote(a) for a in argv)]
    else:
        cmd = [*prefix, *argv]
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


@contextlib.contextmanager
def throwaway_postgres(
    *, user: str = "dagster", database: str = "dagster", host: str = "127.0.0.1", start_timeout: float = 60.0
) -> Iterator[PostgresServer]:
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        raise PostgresUnavailable(MISSING_HINT)
    prefix, run_as = _runner()
    # Not under pytest's tmp_path: its parents are root-only (0700), the server user must
    # be able to reach its data directory.
    base = Path(tempfile.mkdtemp(prefix="ktx-pg-"))
    data, sock, log = base / "data", base / "sock", base / "server.log"
    password = secrets.token_hex(16)
    pwfile = base / "pwfile"
    pwfile.write_text(password + "\n")
    sock.mkdir()
    if run_as:
        entry = pwd.getpwnam(run_as)
        for path in (base, sock, pwfile):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    started = False
    try:
        init = _run(
            prefix,
            [
                str(bin_dir / "initdb"), "-D", str(data), "-U", user, f"--pwfile={pwfile}",
                "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C",
                "--no-sync",
            ],
            timeout=120,
        )
        if init.returncode != 0:
            raise PostgresUnavailable(f"initdb failed ({init.returncode}):\n{init.stdout}\n{init.stderr}")
        pwfile.unlink()
        for attempt in range(5):
            port = _free_port(host)
            options = " ".join([
                f"-c listen_addresses={host}", f"-p {port}", f"-c unix_socket_directories={sock}",
                "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
                "-c shared_buffers=32MB", "-c max_connections=200",
            ])
            start = _run(
                prefix,
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w",
                 "-t", str(int(start_timeout)), "start"],
                timeout=start_timeout + 30,
            )
            if start.returncode == 0:
                started = True
                break
            text = log.read_text(errors="replace") if log.exists() else ""
            if "Address already in use" not in text and "could not bind" not in text:
                raise PostgresUnavailable(f"pg_ctl start failed:\n{start.stdout}\n{start.stderr}\n{text[-3000:]}")
            time.sleep(0.2 * (attempt + 1))
        if not started:
            raise PostgresUnavailable("pg_ctl start failed: no free port after 5 tries")
        server = PostgresServer(
            host=host, port=port, user=user, password=password, database="postgres", base_dir=base, bin_dir=bin_dir
        )
        yield server.create_database(database) if database != "postgres" else server
    finally:
        if started:
            _run(prefix, [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], timeout=60)
        shutil.rmtree(base, ignore_errors=True)

"""The throwaway PostgreSQL helper: finds Debian's binaries, and without them skips, or fails
when KTX_REQUIRE_POSTGRES=1. (The server itself is exercised by test_shared_postgres.py.)"""

from __future__ import annotations

import os
import stat

import pytest

from ktx_dagster.testing.postgres import MISSING_HINT, find_postgres_bin
from ktx_dagster.testing.pytest_plugin import postgres_or_skip


def _fake_bin(tmp_path, tools=("initdb", "pg_ctl", "postgres")):
    bin_dir = tmp_path / "15" / "bin"
    bin_dir.mkdir(parents=True)
    for tool in tools:
        path = bin_dir / tool
        path.write_text("#!/bin/sh\nexit 1\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def test_find_postgres_bin_wants_every_server_tool(tmp_path):
    assert find_postgres_bin({"KTX_PG_BIN": str(_fake_bin(tmp_path))}) == tmp_path / "15" / "bin"
    assert find_postgres_bin({"KTX_PG_BIN": str(_fake_bin(tmp_path / "x", tools=("initdb",)))}) is None
    assert find_postgres_bin({"KTX_PG_BIN": str(tmp_path / "nowhere")}) is None


def test_missing_binaries_skip_with_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("KTX_PG_BIN", str(tmp_path / "nowhere"))
    monkeypatch.delenv("KTX_REQUIRE_POSTGRES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install postgresql"):
        with postgres_or_skip():
            pass
    assert "apt-get install postgresql" in MISSING_HINT


def test_missing_binaries_fail_when_required(tmp_path, monkeypatch):
    monkeypatch.setenv("KTX_PG_BIN", str(tmp_path / "nowhere"))
    monkeypatch.setenv("KTX_REQUIRE_POSTGRES", "1")
    with pytest.raises(pytest.fail.Exception, match="KTX_REQUIRE_POSTGRES=1"):
        with postgres_or_skip():
            pass


@pytest.mark.skipif(find_postgres_bin() is None or os.geteuid() != 0, reason="needs the binaries and root")
def test_server_runs_as_postgres_user_and_goes_away(monkeypatch):
    monkeypatch.delenv("KTX_PG_BIN", raising=False)
    with postgres_or_skip() as pg:
        ((user, listen),) = pg.query("SELECT current_user, current_setting('listen_addresses')")
        assert (user, listen) == ("dagster", "127.0.0.1")
        owner = os.stat(pg.base_dir / "data").st_uid
        import pwd

        assert owner == pwd.getpwnam("postgres").pw_uid
        other = pg.create_database("ktx_other")
        assert other.query("SELECT current_database()") == [("ktx_other",)]
        base = pg.base_dir
    assert not base.exists()

"""docs/reliability.md is what the tests' reliability markers say, and every case issue #11
names has a test behind it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import reliability_report as report

pytestmark = pytest.mark.static


@pytest.fixture(scope="module")
def collected() -> dict:
    # In a subprocess: pytest.main inside a running pytest would share its imported modules.
    out = subprocess.run([sys.executable, "-m", "tests.reliability_report", "--json"], cwd=report.ROOT,
                         capture_output=True, text=True, timeout=300)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RELIABILITY-JSON ")), None)
    assert line, f"no rows printed (exit {out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    return json.loads(line.removeprefix("RELIABILITY-JSON "))


def test_every_marker_is_well_formed(collected):
    assert collected["errors"] == []


def test_the_committed_report_is_what_the_tests_say(collected):
    assert report.REPORT.read_text() == report.render(collected["rows"]), (
        "docs/reliability.md is out of date: run python -m tests.reliability_report")


def test_every_case_the_issue_names_has_a_test(collected):
    assert report.missing_required(collected["rows"]) == []


def test_a_dropped_test_shows_as_a_missing_case_and_a_changed_report(collected):
    rows = collected["rows"]
    dropped = [r for r in rows if r["case"] != "a truncated slice"]
    assert "bad input: a truncated slice" in report.missing_required(dropped)
    assert report.render(dropped) != report.REPORT.read_text()

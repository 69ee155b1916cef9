"""`ktx materialize` schedules by dependencies, not by levels: an asset starts once the
selected assets it reads have ended, so independent branches share the slots (a real CLI
process, real runs in a real instance; tests/fixtures/schedule_defs.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

REPO = Path(__file__).resolve().parents[1]
LOCATION = ["-f", str(REPO / "tests" / "fixtures" / "schedule_defs.py")]
pytestmark = pytest.mark.timeout(300)


def _materialize(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    data, home = tmp_path / "data", tmp_path / "home"
    data.mkdir(exist_ok=True)
    env = {**os.environ, "KTX_DATA_DIR": str(data), "DAGSTER_HOME": str(home), "KTX_MAX_CONCURRENT": "2",
           "KTX_DEPLOYMENT": "local"}
    proc = subprocess.run([sys.executable, "-m", "ktx_dagster", "materialize", *LOCATION, *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=240)
    return proc, home


def _runs_by_asset(home: Path) -> dict[str, list[dg.RunRecord]]:
    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.get() as instance:
        records = instance.get_run_records()
    by_asset: dict[str, list[dg.RunRecord]] = {}
    for record in records:
        (key,) = record.dagster_run.asset_selection
        by_asset.setdefault(key.to_user_string(), []).append(record)
    return by_asset


def test_an_independent_asset_runs_while_a_single_task_asset_does(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    proc, home = _materialize(tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "model: nothing else ran" not in out
    runs = _runs_by_asset(home)
    assert {name: len(r) for name, r in runs.items()} == {"features": 2, "model": 1, "side": 2, "report": 1}
    assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for rs in runs.values() for r in rs)

    def span(record: dg.RunRecord) -> tuple[float, float]:
        return record.start_time, record.end_time

    (model_start, model_end), = map(span, runs["model"])
    (report_start, _), = map(span, runs["report"])
    # Dependencies still hold: model and side after both features partitions, report after model.
    features_end = max(span(r)[1] for r in runs["features"])
    assert model_start >= features_end and min(span(r)[0] for r in runs["side"]) >= features_end
    assert report_start >= model_end
    # And the point of it: a side partition ran while model did.
    assert any(start < model_end and end > model_start for start, end in map(span, runs["side"]))

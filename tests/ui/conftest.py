"""One real local Dagster deployment shared by the UI tests: webserver + daemon on loopback.

The deployment is started once per session (≈20-40 s on 2 cores) with Hello World inputs
part_1..part_3 registered as partitions, exactly as `make dev` prepares them. Tests run in
file order (backfill, browser, sensor) and each states what it expects of the others.
When a test fails, the tail of the webserver's and daemon's logs is attached to its report.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from dagster_stack import MAX_CONCURRENT_RUNS, REPO, SAMPLE_KEYS, DagsterStack, write_inputs  # noqa: E402
OUTPUT_DIR = REPO / "test-output" / "ui"


@pytest.fixture(scope="session")
def ui_stack(tmp_path_factory):
    stack = DagsterStack(
        tmp_path_factory.mktemp("ui-stack"),
        max_concurrent_runs=MAX_CONCURRENT_RUNS,
        # KTX_UI_STOCK_DAEMON=1: the unmodified dagster-daemon (backfills evaluated every 30 s).
        daemon_interval=None if os.environ.get("KTX_UI_STOCK_DAEMON") == "1" else 2,
        sensor_interval=2,
    )
    write_inputs(stack.data, SAMPLE_KEYS)
    stack.sync_partitions()
    with stack.running(timeout=180):
        yield stack


@pytest.fixture
def output_dir(request) -> Path:
    path = OUTPUT_DIR / request.node.name
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    funcargs = getattr(item, "funcargs", {})
    stack = next((v for v in funcargs.values() if isinstance(v, DagsterStack)), None)
    if report.failed and stack is not None:
        report.sections.append(("dagster webserver/daemon logs", stack.dump_logs()))

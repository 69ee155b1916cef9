"""The daemon or the webserver restarted in the middle of a backfill: it completes, every
partition once, none twice at once, none lost.

A real deployment on loopback (dagster-webserver + dagster-daemon over the repo's
deploy/local/dagster.yaml: the queued run coordinator with a concurrency limit, the warm run
launcher, run monitoring) runs a backfill of tests/ui/slow_location.py: PARTITIONS tasks of
TASK_SECONDS each, every attempt recorded with its pid, start and end. While the queue is full
(runs held in flight by a hold file) and other partitions wait, the daemon is killed with
SIGKILL and started again (or the webserver is); the held runs go on only once the new
process is up, so it meets them still running. The records and the instance then must show: the backfill COMPLETED_SUCCESS,
one successful run and one materialization per partition, no partition's attempts overlapping,
no more runs at once than the limit, no run left QUEUED/STARTING/STARTED.

On SQLite (the local default) and, when the `postgresql` binaries are there, on PostgreSQL.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from dagster_stack import DagsterStack
from ktx_dagster.testing.pytest_plugin import ktx_postgres  # noqa: F401  (fixture)
from slow_location import ATTEMPTS_DIR, HOLD_FILE, PARTITIONS, SECONDS_ENV

pytestmark = [pytest.mark.ui, pytest.mark.timeout(300)]

ASSET = "slow_task"
TASK_SECONDS = 1
MAX_CONCURRENT_RUNS = 3
UNFINISHED = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"]


def _workspace(root: Path) -> Path:
    path = root / "workspace.yaml"
    path.write_text(yaml.safe_dump({"load_from": [{"python_file": {
        "relative_path": str(Path(__file__).with_name("slow_location.py")), "location_name": "slow"}}]}))
    return path


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory):
    """One deployment per storage ("sqlite" or "postgres", the test's indirect parameter)."""
    root = tmp_path_factory.mktemp(f"restart-{request.param}")
    extra_env = {SECONDS_ENV: str(TASK_SECONDS)}
    if request.param == "postgres":
        pg = request.getfixturevalue("ktx_postgres").create_database(f"ktx_{uuid.uuid4().hex[:10]}")
        extra_env.update(pg.dagster_env())
    stack = DagsterStack(root, max_concurrent_runs=MAX_CONCURRENT_RUNS, daemon_interval=1,
                         workspace=_workspace(root), extra_env=extra_env)
    if request.param == "postgres":  # the instance's runs, events and schedules on PostgreSQL
        db = {key: {"env": f"DAGSTER_PG_{env}"} for key, env in
              (("hostname", "HOST"), ("port", "PORT"), ("username", "USER"), ("password", "PASSWORD"), ("db_name", "DB"))}
        storage = {"storage": {"postgres": {"postgres_db": {**db, "scheme": "postgresql+psycopg2"}}}}
        with open(stack.home / "dagster.yaml", "a") as f:
            f.write("\n" + yaml.safe_dump(storage))
    try:
        stack.start(timeout=180)
    except BaseException:
        stack.stop()
        print(stack.dump_logs(), file=sys.stderr)
        raise
    yield stack
    stack.stop()


def _attempts(stack: DagsterStack) -> list[dict]:
    folder = stack.data / ATTEMPTS_DIR
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.exists() else []


def _overlapping(attempts: list[dict]) -> list[tuple[dict, dict]]:
    """Pairs of attempts of one partition whose [start, end] intervals meet (unfinished: open-ended)."""
    pairs = []
    for i, a in enumerate(attempts):
        for b in attempts[i + 1:]:
            if a["partition"] == b["partition"]:
                if a["start"] < (b["end"] or float("inf")) and b["start"] < (a["end"] or float("inf")):
                    pairs.append((a, b))
    return pairs


def _peak_concurrency(attempts: list[dict]) -> int:
    edges = sorted([(a["start"], 1) for a in attempts] + [(a["end"], -1) for a in attempts if a["end"]])
    current = peak = 0
    for _, delta in edges:
        current += delta
        peak = max(peak, current)
    return peak


def _unfinished_runs(stack: DagsterStack) -> list[dict]:
    data = stack.graphql(
        """query($f: RunsFilter) { runsOrError(filter: $f) { __typename ... on Runs {
             results { id status tags { key value } } } } }""",
        {"f": {"statuses": UNFINISHED}},
    )
    return data["runsOrError"]["results"]


def _run_failures(stack: DagsterStack, run_id: str) -> list[str]:
    """Messages of the run's RUN_FAILURE events: a run marked failed even once, if later it succeeded."""
    data = stack.graphql(
        """query($id: ID!) { runOrError(runId: $id) { __typename ... on Run {
             eventConnection(afterCursor: null) { events { __typename ... on MessageEvent { message } } } } } }""",
        {"id": run_id},
    )
    return [e["message"] for e in data["runOrError"]["eventConnection"]["events"] if e["__typename"] == "RunFailureEvent"]


def _restart_mid_backfill(stack: DagsterStack, process: str, title: str, held_after: float) -> tuple[dict, float]:
    """Launch a backfill of every partition; once the queue is full of its runs (held) and
    partitions still wait, SIGKILL `process` and start it again, and let the held runs end
    a few seconds after it is back. Returns the finished backfill and when it was killed."""
    hold = stack.data / HOLD_FILE
    hold.touch()
    try:
        backfill_id = stack.launch_backfill(ASSET, title=title)

        def queue_full():
            started = {r["run_id"] for r in _attempts(stack) if r["end"] is None}
            mine = {r["id"] for r in stack.backfill(backfill_id)["runs"]}
            return len(started & mine) >= MAX_CONCURRENT_RUNS

        stack.wait_for(queue_full, time.monotonic() + 120, "the backfill's first runs executing", interval=0.3)
        killed_at = time.time()
        stack.kill(process, signal.SIGKILL)
        time.sleep(0.5)
        stack.restart(process, timeout=120)
        back_at = time.time()
        # The new process's loops meet the held runs (a new daemon's run queue needs a few
        # seconds to start its fork server: only then could it over-launch).
        time.sleep(held_after)
    finally:
        hold.unlink()
    backfill = stack.wait_backfill(backfill_id, timeout=240)
    print(f"{title}: killed {killed_at - backfill['timestamp']:.1f}s into the backfill, back after "
          f"{back_at - killed_at:.1f}s; {backfill['status']} after {time.time() - backfill['timestamp']:.1f}s")
    return backfill, killed_at


def _assert_each_partition_once(stack: DagsterStack, backfill: dict, killed_at: float) -> None:
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    (counts,) = backfill["assetBackfillData"]["assetBackfillStatuses"]
    assert counts["numPartitionsTargeted"] == len(PARTITIONS)
    assert counts["numPartitionsMaterialized"] == len(PARTITIONS) and counts["numPartitionsFailed"] == 0, counts

    # One run per partition, each a success: none launched twice, none lost.
    runs = backfill["runs"]
    by_partition: dict[str, list[str]] = {}
    for run in runs:
        by_partition.setdefault(stack.partition_of(run), []).append(run["status"])
    assert by_partition == {key: ["SUCCESS"] for key in PARTITIONS}, by_partition

    # One attempt per partition, finished, in this backfill's own run of it.
    run_ids = {run["id"]: stack.partition_of(run) for run in runs}
    attempts = [a for a in _attempts(stack) if a["run_id"] in run_ids]
    assert sorted(a["partition"] for a in attempts) == PARTITIONS, attempts
    assert all(a["end"] is not None and run_ids[a["run_id"]] == a["partition"] for a in attempts), attempts
    # No partition ever executing twice at once (this backfill's attempts and any before it).
    assert _overlapping(_attempts(stack)) == []
    # The queue kept its limit across the restart (a run launched twice would break it).
    assert _peak_concurrency(attempts) <= MAX_CONCURRENT_RUNS

    # The kill really fell in the middle: some attempts began before it, some after.
    assert any(a["start"] < killed_at for a in attempts), (killed_at, attempts)
    assert any(a["start"] > killed_at for a in attempts), (killed_at, attempts)

    # One materialization per partition from this backfill; nothing left running or queued.
    materialized = sorted(m["partition"] for m in stack.materializations(ASSET) if m["runId"] in run_ids)
    assert materialized == PARTITIONS
    assert _unfinished_runs(stack) == []
    # And no run was ever taken for dead (run monitoring meeting the old daemon's runs).
    assert {run["id"]: _run_failures(stack, run["id"]) for run in runs} == {run["id"]: [] for run in runs}


@pytest.mark.reliability(
    "fault",
    case="the daemon restarted during a backfill",
    injected="dagster-daemon (backfill daemon, run queue of 3, run monitoring) SIGKILLed while 3 runs of "
             "an 8-partition backfill execute and 5 wait, then started again; the 3 runs go on past the restart",
    seen="the runs in flight finish (the new daemon's run monitoring finds them alive); the new daemon "
         "launches the waiting partitions and marks the backfill done",
    outcome="COMPLETED_SUCCESS; one successful run and materialization per partition; no partition's "
            "attempts overlap; never more runs than the limit; no run ever marked failed, none left "
            "queued or started (SQLite and PostgreSQL)",
)
@pytest.mark.parametrize("stack", ["sqlite", "postgres"], indirect=True)
def test_daemon_killed_mid_backfill(stack):
    backfill, killed_at = _restart_mid_backfill(stack, "daemon", "daemon restarted", held_after=3)
    _assert_each_partition_once(stack, backfill, killed_at)


@pytest.mark.reliability(
    "fault",
    case="the webserver restarted during a backfill",
    injected="dagster-webserver SIGKILLed while 3 runs of an 8-partition backfill it launched execute and "
             "5 wait, then started again",
    seen="the backfill goes on (the daemon runs it); the new webserver shows its progress and end",
    outcome="COMPLETED_SUCCESS; one successful run and materialization per partition; no partition's "
            "attempts overlap; never more runs than the limit; no run ever marked failed, none left "
            "queued or started",
)
@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)  # the webserver only launches it: storage aside
def test_webserver_killed_mid_backfill(stack):
    backfill, killed_at = _restart_mid_backfill(stack, "webserver", "webserver restarted", held_after=1)
    _assert_each_partition_once(stack, backfill, killed_at)

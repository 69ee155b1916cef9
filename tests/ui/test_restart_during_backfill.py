"""The daemon or the webserver restarted in the middle of a backfill: it completes, every
partition once, none twice at once, none lost.

A real deployment on loopback (dagster-webserver + dagster-daemon over the repo's
deploy/local/dagster.yaml: the queued run coordinator with a concurrency limit, the warm run
launcher, run monitoring, run retries) runs a backfill of tests/ui/slow_location.py:
PARTITIONS tasks of TASK_SECONDS each, every attempt recorded with its pid, start and end.

- mid-backfill: while the queue is full (runs held in flight by a hold file) and other
  partitions wait, the daemon is killed with SIGKILL and started again (or the webserver is);
  the held runs go on only once the new process is up, so it meets them still running;
- while launching: the daemon is killed while a run is STARTING and its process not yet
  forked. That run is orphaned: run monitoring fails it after start_timeout_seconds and
  run_retries (failures of no step only) runs its partition again. Before both settings were
  shipped, the backfill ended COMPLETED_FAILED after 3 minutes, that partition lost.

The records and the instance then must show: the backfill COMPLETED_SUCCESS, one successful
run, attempt and materialization per partition, no partition's attempts overlapping, no more
runs at once than the limit, no run taken for dead or left QUEUED/STARTING/STARTED.

On SQLite (the local default) and, when the `postgresql` binaries are there, on PostgreSQL
(the daemon's restart mid-backfill).
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path

import pytest
import yaml

from dagster_stack import REPO, DagsterStack
from ktx_dagster.run_launcher import PID_TAG
from ktx_dagster.testing.pytest_plugin import ktx_postgres  # noqa: F401  (fixture)
from slow_location import ATTEMPTS_DIR, HOLD_FILE, PARTITIONS, SECONDS_ENV

pytestmark = [pytest.mark.ui, pytest.mark.timeout(300)]

ASSET = "slow_task"
TASK_SECONDS = 1
MAX_CONCURRENT_RUNS = 3
START_TIMEOUT = 20
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
    config_path = stack.home / "dagster.yaml"
    config = yaml.safe_load(config_path.read_text())
    # As shipped: a run that failed with no step failing runs once more.
    assert config["run_retries"] == {"enabled": True, "max_retries": 1, "retry_on_asset_or_op_failure": False}
    # Shorter waits than shipped, so a run orphaned in STARTING is failed and retried within
    # the test's time: 60 s -> START_TIMEOUT, polled every second instead of every 30 s.
    config["run_monitoring"].update(start_timeout_seconds=START_TIMEOUT, poll_interval_seconds=1)
    if request.param == "postgres":  # the shared instance's storage as shipped (it reads DAGSTER_PG_*)
        config["storage"] = yaml.safe_load((REPO / "deploy/minikube/dagster.yaml").read_text())["storage"]
    config_path.write_text(yaml.safe_dump(config))
    with stack.running(timeout=180):
        yield stack


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


def _assert_each_partition_once(stack: DagsterStack, backfill: dict, killed_at: float, orphans: list[dict] = ()) -> None:
    """`orphans`: runs left STARTING by the kill without a process, expected failed (start
    timeout) and retried once."""
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    (counts,) = backfill["assetBackfillData"]["assetBackfillStatuses"]
    assert counts["numPartitionsTargeted"] == len(PARTITIONS)
    assert counts["numPartitionsMaterialized"] == len(PARTITIONS) and counts["numPartitionsFailed"] == 0, counts

    # One successful run per partition: none launched twice, none lost (an orphan's partition:
    # its failed run, then the retry's success).
    runs = sorted(backfill["runs"], key=lambda r: r["creationTime"])
    by_partition: dict[str, list[str]] = {}
    for run in runs:
        by_partition.setdefault(stack.partition_of(run), []).append(run["status"])
    expected = {key: ["SUCCESS"] for key in PARTITIONS}
    for orphan in orphans:
        expected[stack.partition_of(orphan)] = ["FAILURE", "SUCCESS"]
    assert by_partition == expected, by_partition

    # One attempt per partition, finished, in this backfill's own run of it.
    run_ids = {run["id"]: stack.partition_of(run) for run in runs}
    attempts = [a for a in _attempts(stack) if a["run_id"] in run_ids]
    assert sorted(a["partition"] for a in attempts) == PARTITIONS, attempts
    assert all(a["end"] is not None and run_ids[a["run_id"]] == a["partition"] for a in attempts), attempts
    # No partition ever executing twice at once (this backfill's attempts and any before it).
    assert _overlapping(_attempts(stack)) == []
    # The queue kept its limit across the restart (a run launched twice would break it).
    assert _peak_concurrency(attempts) <= MAX_CONCURRENT_RUNS

    # The kill really fell in the middle: some attempts began before it (unless it hit the
    # first launch), some after.
    assert orphans or any(a["start"] < killed_at for a in attempts), (killed_at, attempts)
    assert any(a["start"] > killed_at for a in attempts), (killed_at, attempts)

    # One materialization per partition from this backfill; nothing left running or queued.
    materialized = sorted(m["partition"] for m in stack.materializations(ASSET) if m["runId"] in run_ids)
    assert materialized == PARTITIONS
    assert _unfinished_runs(stack) == []
    # And no run was ever taken for dead (run monitoring meeting the old daemon's runs), but
    # the orphans, which never had a process.
    failures = {run["id"]: _run_failures(stack, run["id"]) for run in runs}
    for orphan in orphans:
        (message,) = failures.pop(orphan["id"])
        assert f"longer than {START_TIMEOUT} seconds to start" in message, message
        (retry,) = [r for r in runs if r["id"] != orphan["id"] and stack.partition_of(r) == stack.partition_of(orphan)]
        assert {"key": "dagster/parent_run_id", "value": orphan["id"]} in retry["tags"], retry
    assert failures == {run_id: [] for run_id in failures}


@pytest.mark.reliability(
    "fault",
    case="the daemon killed while it launches a run",
    injected="dagster-daemon's process group (the daemon and the fork server it started, as a container "
             "restart) SIGKILLed while the first run of an 8-partition backfill is STARTING (its process not "
             "forked yet), then started again",
    seen="a run that never got its process fails 'Run timed out due to taking longer than ... seconds to "
         "start' (run monitoring, start_timeout_seconds) and is retried once (run_retries for failures of no "
         "step)",
    outcome="COMPLETED_SUCCESS; one successful run, attempt and materialization per partition; an orphaned "
            "run either never executed or is that partition's only attempt; no partition's attempts overlap; "
            "no run left queued or started",
)
@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_daemon_killed_while_launching_a_run(stack):
    # First on its deployment: the daemon's first launch starts the fork server (seconds), the
    # window this kill needs. Later launches take milliseconds.
    backfill_id = stack.launch_backfill(ASSET, title="daemon killed while launching")

    def starting_without_process():
        data = stack.graphql(
            """{ runsOrError(filter: {statuses: [STARTING]}) { __typename ... on Runs {
                 results { id status creationTime tags { key value } } } } }""")
        return [r for r in data["runsOrError"]["results"] if not any(t["key"] == PID_TAG for t in r["tags"])]

    stack.wait_for(starting_without_process, time.monotonic() + 120, "a run STARTING", interval=0.1)
    killed_at = time.time()
    # With its process group, as a container restart does: the fork server it started goes
    # too, so a fork request it had sent is never served (alone, the daemon leaves the fork
    # server behind, which starts the run late: then it runs once, as a run in flight does).
    stack.kill("daemon", signal.SIGKILL, group=True)
    # The queue launches on 2 threads: one run or two may be caught half-launched. A run whose
    # process was forked after all names it within a second (the worker tags its own pid).
    time.sleep(1)
    orphans = starting_without_process()
    assert orphans
    stack.restart("daemon", timeout=120)
    backfill = stack.wait_backfill(backfill_id, timeout=240)
    print(f"daemon killed while launching: {backfill['status']} after {time.time() - backfill['timestamp']:.1f}s")
    # The daemon may die after its fork request reached the fork server, which outlives it:
    # that run then gets its process late (its start was only slow) and runs once, as a run
    # in flight at a daemon restart does. The others never execute and are retried.
    late = {a["run_id"] for a in _attempts(stack)} & {o["id"] for o in orphans}
    never_started = [o for o in orphans if o["id"] not in late]
    print(f"orphans: {len(never_started)} never started, {len(late)} started late by the surviving fork server")
    _assert_each_partition_once(stack, backfill, killed_at, orphans=never_started)


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
# PostgreSQL (the shared instance) as well, in the heavy run: the SQLite case is the default's.
@pytest.mark.parametrize("stack", ["sqlite", pytest.param("postgres", marks=pytest.mark.heavy)], indirect=True)
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

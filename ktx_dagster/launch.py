"""Materialize transformations from the command line: every partition of each selected asset,
one run per partition, at most N runs at once, assets in dependency order.

This is kube-transform's controller (submit jobs in dependency order, wait, go on) expressed
with Dagster's own pieces. An asset starts as soon as every selected asset it reads has ended,
not when a whole level of the graph has: independent branches run side by side, so a
single-task asset (a model, a report) does not leave the other cores idle while it runs.
When more partitions are ready than there are slots, the asset earlier in dependency order
goes first. Each partition is a real run in the instance under DAGSTER_HOME, executed by
the deployment's executor (multiprocess locally, one pod per step on Kubernetes). In the
UI the same thing is a backfill, run by the daemon.

Each run is created in the instance here and executed in a fresh process forked from a warm
server (warm.py: the libraries and the code location are imported once, not once per
partition), exactly as the WarmRunLauncher executes the runs of a backfill; at most N at
once, fed from a shared queue, so a slow partition never holds up the others. A run process
that dies (crash, OOM kill) fails only the partition it held.
"""

from __future__ import annotations

import itertools
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import dagster as dg
from ktx_dagster import warm
from ktx_dagster.code_location import CodeLocation
from ktx_dagster.partitions import partition_keys_for

# Task logs (started / finished, counts) at INFO; Dagster's per-event DEBUG lines stay in the UI.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
FAILURE_EVENTS = {dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE}


@dataclass
class AssetOutcome:
    asset: str
    succeeded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # partition -> first error line
    skipped: bool = False
    seconds: float = 0.0


def first_error(instance: dg.DagsterInstance, run_id: str) -> str:
    """The first step or run failure of a run, as the user's own exception put it."""
    for record in instance.all_logs(run_id, of_type=FAILURE_EVENTS):
        error = getattr(record.dagster_event.event_specific_data, "error", None)
        if error is not None:
            cause = error
            while cause.cause is not None:  # the user's exception, not Dagster's wrapper
                cause = cause.cause
            return cause.message.strip().splitlines()[0][:300]
    return "failed (see the run's logs in the UI)"


def describe_death(pid: int | None, exitcode: int | None) -> str:
    """Why a run process ended without ending its run, in the user's terms."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        cause = " (the OOM killer or kill -9)" if -exitcode == signal.SIGKILL else ""
        return f"run process {pid} was killed by {name}{cause} before the run ended (exit {exitcode})"
    return f"run process {pid} exited with {exitcode} before the run ended (a crash in the process)"


def create_partition_run(recon_repo, repo_def: dg.RepositoryDefinition, asset: str, partition: str | None,
                         instance: dg.DagsterInstance) -> str:
    """A run of one partition of one asset, created in the instance as `dagster job launch`
    would create it (not started); returns its id."""
    key = dg.AssetKey.from_user_string(asset)
    job_def = repo_def.get_implicit_job_def_for_assets([key])
    tags = {"ktx/launched-by": "ktx-cli"}
    if partition is not None:
        tags.update(job_def.get_tags_for_partition_key(partition, selected_asset_keys=[key]))
    recon_job = recon_repo.get_reconstructable_job(job_def.name)
    run = instance.create_run_for_job(
        job_def=job_def, run_config=QUIET_RUN_CONFIG, tags=tags, asset_selection=frozenset([key]),
        job_code_origin=recon_job.get_python_origin(),
    )
    return run.run_id


class WorkerPool:
    """At most N runs at once, each in a fresh process forked from a warm server (warm.py).

    A slot takes the next partition from a shared queue as soon as its run ends, so a slow
    partition never holds up the others. A run process that dies (crash, OOM kill) fails only
    its own partition. Each slot appends its runs' console output to a log file.
    """

    def __init__(self, size: int, location: CodeLocation, repo_def: dg.RepositoryDefinition,
                 instance: dg.DagsterInstance, preload: Sequence[str]):
        self.size, self.repo_def, self.instance, self.preload = size, repo_def, instance, preload
        self.recon_repo = location.reconstructable()
        self.log_dir = os.path.join(instance.root_directory, "ktx-cli-logs")
        os.makedirs(self.log_dir, exist_ok=True)
        self._create_lock = threading.Lock()

    def _run(self, slot: int, asset: str, partition: str | None) -> dict:
        log = os.path.join(self.log_dir, f"worker-{slot}.log")
        try:
            with self._create_lock:  # one writer of new runs at a time (SQLite)
                run_id = create_partition_run(self.recon_repo, self.repo_def, asset, partition, self.instance)
        except Exception as exc:  # a partition the definitions cannot run: report, go on
            return {"success": False, "run_id": "-", "error": f"{type(exc).__name__}: {exc}"[:300], "log": log}
        proc = warm.start_run(run_id, self.instance, preload=self.preload, log_path=log)
        proc.join()
        run = self.instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            # The process died before the run could end itself (OOM kill, crash): say so.
            error = describe_death(proc.pid, proc.exitcode)
            self.instance.report_run_failed(run, error)
            return {"success": False, "run_id": run_id, "error": error, "log": log}
        success = run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        return {"success": success, "run_id": run_id,
                "error": None if success else first_error(self.instance, run_id), "log": log}

    def start(self) -> None:
        """N slots, each taking the next (priority, asset, partition) as soon as its run ends."""
        self.todo: queue.PriorityQueue = queue.PriorityQueue()
        self.done: queue.Queue = queue.Queue()
        self._count = itertools.count()  # FIFO among equal priorities
        self._threads = [threading.Thread(target=self._drain, args=(slot,), daemon=True) for slot in range(self.size)]
        for t in self._threads:
            t.start()

    def submit(self, priority: int, asset: str, partition: str | None) -> None:
        self.todo.put((priority, next(self._count), asset, partition))

    def stop(self) -> None:
        for _ in self._threads:
            self.todo.put((float("inf"), next(self._count), None, None))
        for t in self._threads:
            t.join()

    def _drain(self, slot: int) -> None:
        while True:
            _, _, asset, partition = self.todo.get()
            if asset is None:
                return
            started = time.perf_counter()
            try:
                result = self._run(slot, asset, partition)
            except Exception as exc:  # never lose a partition's outcome: the caller waits for it
                result = {"success": False, "run_id": "-", "error": f"{type(exc).__name__}: {exc}"[:300],
                          "log": os.path.join(self.log_dir, f"worker-{slot}.log")}
            self.done.put((asset, partition, result, started, time.perf_counter()))


def selected_keys(graph, selection: Sequence[str] | None) -> set[dg.AssetKey]:
    """Dagster's selection syntax ("hello_world", "group:spotify_mpc", "+evaluation", ...);
    keys another code location holds are not an error here (a workspace has several)."""
    if not selection:
        return set(graph.materializable_asset_keys)
    # One selection per argument, united: Dagster's parser takes "a or b" only in its
    # key:/group: syntax, so plain names joined with "or" would not parse.
    keys: set[dg.AssetKey] = set()
    for clause in selection:
        keys |= dg.AssetSelection.from_string(clause).resolve(graph, allow_missing=True)
    return keys


def _materialized(instance: dg.DagsterInstance, key: dg.AssetKey, keys: Sequence[str | None]) -> set[str | None]:
    if keys == [None]:
        return {None} if instance.get_latest_materialization_event(key) is not None else set()
    return set(instance.get_materialized_partitions(key)) & set(keys)


def materialize(
    selection: Sequence[str] | None,
    instance: dg.DagsterInstance,
    max_concurrent: int,
    only_partitions: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
    *,
    location: CodeLocation,
    missing_only: bool = False,
    preload: Sequence[str] | None = None,
) -> list[AssetOutcome]:
    """Run every partition of the selected assets of one code location (default: all),
    upstream first.

    missing_only: reuse finished work, running only partitions never materialized (kubeface's
    "re-use work of crashed jobs"; after a fix, re-runs exactly what failed). preload: what
    the run processes' fork server imports (default: the libraries and this location; the
    code cannot change during one CLI call, so it is resolved once).
    """
    repo_def = location.load()
    graph = repo_def.asset_graph
    wanted = selected_keys(graph, selection)
    order = [key for level in graph.toposorted_asset_keys_by_level for key in sorted(level) if key in wanted]
    rank = {key: i for i, key in enumerate(order)}
    # What an asset waits for: the selected assets it reads (unselected ones are taken as they are).
    waits_for = {key: graph.get(key).parent_keys & wanted for key in order}
    outcomes = {key: AssetOutcome(asset=key.to_user_string()) for key in order}
    failed_assets: set[dg.AssetKey] = set()
    ended: set[dg.AssetKey] = set()
    running: dict[dg.AssetKey, dict] = {}  # key -> {"left": partitions not reported yet, "keys": all, "started": t}
    pool = WorkerPool(max_concurrent, location, repo_def, instance,
                      preload if preload is not None else warm.preload_code_locations([location]))

    def end(key: dg.AssetKey, failed: bool) -> None:
        ended.add(key)
        if failed:
            failed_assets.add(key)

    def start(key: dg.AssetKey) -> None:
        """Decide what to run of an asset whose inputs have all ended, and queue it."""
        name, outcome = key.to_user_string(), outcomes[key]
        if waits_for[key] & failed_assets:
            outcome.skipped = True
            log(f"{name}: skipped, an upstream transformation failed")
            return end(key, failed=True)
        keys = partition_keys_for(repo_def.assets_defs_by_key[key], instance)
        if not keys:  # file partitions without one input file: nothing can run, which is no success
            outcome.skipped = True
            log(f"{name}: no partitions, so nothing to run (no input files: see the partitions line above)")
            return end(key, failed=True)
        if only_partitions is not None:
            keys = [k for k in keys if k in set(only_partitions)]
        if missing_only:
            done = _materialized(instance, key, keys)
            if done:
                log(f"{name}: {len(done)} partition(s) already materialized, reused")
            keys = [k for k in keys if k not in done]
            if not keys:
                return end(key, failed=False)
        if not keys:
            log(f"{name}: none of its partitions is among --partition {' '.join(only_partitions or [])}")
            return end(key, failed=False)
        log(f"{name}: {len(keys)} partition(s), up to {max_concurrent} at once")
        running[key] = {"left": len(keys), "total": len(keys), "first_start": float("inf")}
        for partition in keys:
            pool.submit(rank[key], name, partition)

    def report(key: dg.AssetKey, partition: str | None, result: dict, started: float, finished: float) -> None:
        name, outcome, state = key.to_user_string(), outcomes[key], running[key]
        seconds = finished - started
        state["first_start"] = min(state["first_start"], started)
        done = len(outcome.succeeded) + len(outcome.failed) + 1
        label = f"{name}[{partition}]" if partition is not None else name
        if result["success"]:
            outcome.succeeded.append(str(partition))
            log(f"  [{done}/{state['total']}] {label} ok in {seconds:.1f}s (run {result['run_id'][:8]})")
        else:
            outcome.failed[str(partition)] = result["error"]
            log(f"  [{done}/{state['total']}] {label} FAILED (run {str(result['run_id'])[:8]}): {result['error']}")
            log(f"      worker log: {result['log']}")
        state["left"] -= 1
        if state["left"] == 0:
            # From its first run's start to its last run's end: time waiting for a slot, while
            # another asset's partitions held them, is not this asset's.
            outcome.seconds = finished - state["first_start"]
            del running[key]
            end(key, failed=bool(outcome.failed))

    pool.start()
    try:
        while len(ended) < len(order):
            for key in order:  # everything whose inputs have ended starts, in dependency order
                if key not in ended and key not in running and waits_for[key] <= ended:
                    start(key)
            if running:
                asset, partition, result, started, finished = pool.done.get()
                report(dg.AssetKey.from_user_string(asset), partition, result, started, finished)
            elif len(ended) < len(order):  # pragma: no cover - a cycle the asset graph cannot hold
                raise RuntimeError(f"assets waiting on each other: {sorted(str(k) for k in set(order) - ended)}")
    finally:
        pool.stop()
    return [outcomes[key] for key in order]

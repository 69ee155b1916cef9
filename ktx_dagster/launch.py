"""Materialize transformations from the command line: every partition of each selected asset,
one run per partition, at most N runs at once, assets in dependency order.

This is kube-transform's controller (submit jobs in dependency order, wait, go on) expressed
with Dagster's own pieces: each run is a real run in the instance under DAGSTER_HOME, executed
by the deployment's executor (multiprocess locally, one pod per step on Kubernetes). In the
UI the same thing is a backfill, run by the daemon.

Each run executes in a fresh process forked from a warm server (warm.py: the libraries are
imported once, not once per partition); at most N at once, fed from a shared queue, so a slow
partition never holds up the others. A run process that dies (crash, OOM kill) fails only the
partition it held.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.definitions.reconstruct import ReconstructableRepository

from ktx_dagster import warm

CODE_LOCATION_MODULE = "ktx_dagster.definitions"
# Task logs (started / finished, counts) at INFO; Dagster's per-event DEBUG lines stay in the UI.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


@dataclass
class AssetOutcome:
    asset: str
    succeeded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # partition -> first error line
    skipped: bool = False
    seconds: float = 0.0


def _first_error(result: dg.ExecuteInProcessResult | object) -> str:
    for event in result.all_events:  # type: ignore[attr-defined]
        if event.is_step_failure or event.is_run_failure:
            data = event.event_specific_data
            error = getattr(data, "error", None)
            if error is not None:
                cause = error
                while cause.cause is not None:  # the user's exception, not Dagster's wrapper
                    cause = cause.cause
                return cause.message.strip().splitlines()[0][:300]
    return "failed (see the run's logs in the UI)"


def run_partition(module: str, asset: str, partition: str | None, instance: dg.DagsterInstance) -> dict:
    """One run of one partition of one asset, in this process, with the job's own executor."""
    recon_repo = ReconstructableRepository.for_module(module, "defs")
    repo_def = recon_repo.get_definition()
    key = dg.AssetKey.from_user_string(asset)
    job_def = repo_def.get_implicit_job_def_for_assets([key])
    tags = {"ktx/launched-by": "ktx-cli"}
    if partition is not None:
        tags.update(job_def.get_tags_for_partition_key(partition, selected_asset_keys=[key]))
    result = dg.execute_job(
        recon_repo.get_reconstructable_job(job_def.name), instance=instance, tags=tags,
        asset_selection=[key], run_config=QUIET_RUN_CONFIG,
    )
    return {"success": result.success, "run_id": result.run_id, "error": None if result.success else _first_error(result)}


def _run_in_child(module: str, asset: str, partition: str | None, results) -> None:
    """Body of one run process: the run, then its outcome on the `results` pipe."""
    try:
        with dg.DagsterInstance.get() as instance:
            result = run_partition(module, asset, partition, instance)
    except Exception as exc:  # a broken definition must be reported, not just logged
        result = {"success": False, "run_id": "-", "error": f"{type(exc).__name__}: {exc}"[:300]}
    results.send(result)


class WorkerPool:
    """At most N runs at once, each in a fresh process forked from a warm server (warm.py).

    A slot takes the next partition from a shared queue as soon as its run ends, so a slow
    partition never holds up the others. A run process that dies (crash, OOM kill) fails only
    its own partition. Each slot appends its runs' console output to a log file.
    """

    def __init__(self, size: int, module: str):
        self.size, self.module = size, module
        # The code cannot change during one CLI call: resolve the project's definitions once.
        self.preload = (*warm.PRELOAD, "ktx_dagster.warm_definitions") if module == CODE_LOCATION_MODULE else warm.PRELOAD
        self.log_dir = os.path.join(os.environ["DAGSTER_HOME"], "ktx-cli-logs")
        os.makedirs(self.log_dir, exist_ok=True)

    def _run(self, slot: int, asset: str, partition: str | None) -> dict:
        log = os.path.join(self.log_dir, f"worker-{slot}.log")
        receive, send = multiprocessing.Pipe(duplex=False)
        label = f"{asset}[{partition}]" if partition is not None else asset
        proc = warm.start(_run_in_child, (self.module, asset, partition, send), name=f"ktx-run {label}",
                          log_path=log, preload=self.preload)
        send.close()  # the child holds the sending end now; EOF here means it is gone
        try:
            result = receive.recv()
        except EOFError:
            result = None
        proc.join()
        receive.close()
        if result is None:
            return {"success": False, "run_id": "-", "error": f"run process died (exit {proc.exitcode})", "log": log}
        return {**result, "log": log}

    def map(self, asset: str, partitions: Sequence[str | None], on_result: Callable[[str | None, dict, float], None]) -> None:
        todo: queue.Queue = queue.Queue()
        for partition in partitions:
            todo.put(partition)
        lock = threading.Lock()

        def drain(slot: int) -> None:
            while True:
                try:
                    partition = todo.get_nowait()
                except queue.Empty:
                    return
                started = time.perf_counter()
                result = self._run(slot, asset, partition)
                with lock:
                    on_result(partition, result, time.perf_counter() - started)

        threads = [threading.Thread(target=drain, args=(slot,)) for slot in range(min(self.size, len(partitions)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def _materialized(instance: dg.DagsterInstance, key: dg.AssetKey, keys: Sequence[str | None]) -> set[str | None]:
    if keys == [None]:
        return {None} if instance.get_latest_materialization_event(key) is not None else set()
    return set(instance.get_materialized_partitions(key)) & set(keys)


def partition_keys_for(asset: dg.AssetsDefinition, instance: dg.DagsterInstance) -> list[str | None]:
    if asset.partitions_def is None:
        return [None]
    with partition_loading_context(dynamic_partitions_store=instance):
        return list(asset.partitions_def.get_partition_keys())


def materialize(
    selection: Sequence[str] | None,
    instance: dg.DagsterInstance,
    max_concurrent: int,
    only_partitions: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
    module: str = CODE_LOCATION_MODULE,
    missing_only: bool = False,
) -> list[AssetOutcome]:
    """Run every partition of the selected assets (default: all), upstream first.

    missing_only: reuse finished work, running only partitions never materialized (kubeface's
    "re-use work of crashed jobs"; after a fix, re-runs exactly what failed).
    """
    repo_def = ReconstructableRepository.for_module(module, "defs").get_definition()
    graph = repo_def.asset_graph
    # Dagster's selection syntax: "hello_world", "group:spotify_mpc", "+evaluation", ...
    wanted = (
        dg.AssetSelection.from_string(" or ".join(selection)).resolve(graph)
        if selection
        else set(graph.materializable_asset_keys)
    )
    order = [key for level in graph.toposorted_asset_keys_by_level for key in sorted(level) if key in wanted]
    outcomes: list[AssetOutcome] = []
    failed_assets: set[dg.AssetKey] = set()
    pool = WorkerPool(max_concurrent, module)
    for key in order:
        name = key.to_user_string()
        outcome = AssetOutcome(asset=name)
        outcomes.append(outcome)
        if graph.get(key).parent_keys & failed_assets:
            outcome.skipped = True
            failed_assets.add(key)
            log(f"{name}: skipped, an upstream transformation failed")
            continue
        keys = partition_keys_for(repo_def.assets_defs_by_key[key], instance)
        if only_partitions is not None:
            keys = [k for k in keys if k in set(only_partitions)]
        if missing_only:
            done = _materialized(instance, key, keys)
            if done:
                log(f"{name}: {len(done)} partition(s) already materialized, reused")
            keys = [k for k in keys if k not in done]
            if not keys:
                continue
        if not keys:
            log(f"{name}: no partitions yet (no input files under the data dir?)")
            continue
        log(f"{name}: {len(keys)} partition(s), up to {max_concurrent} at once")
        started = time.perf_counter()

        def report(partition: str | None, result: dict, seconds: float) -> None:
            done = len(outcome.succeeded) + len(outcome.failed) + 1
            label = f"{name}[{partition}]" if partition is not None else name
            if result["success"]:
                outcome.succeeded.append(str(partition))
                log(f"  [{done}/{len(keys)}] {label} ok in {seconds:.1f}s (run {result['run_id'][:8]})")
            else:
                outcome.failed[str(partition)] = result["error"]
                log(f"  [{done}/{len(keys)}] {label} FAILED (run {str(result['run_id'])[:8]}): {result['error']}")
                log(f"      worker log: {result['log']}")

        pool.map(name, keys, report)
        outcome.seconds = time.perf_counter() - started
        if outcome.failed:
            failed_assets.add(key)
    return outcomes


def materialize_in_process(
    assets: Sequence[dg.AssetsDefinition],
    instance: dg.DagsterInstance,
    resources: dict[str, object],
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, int]:
    """Every partition of every asset, in dependency order, in this process (`dg.materialize`).

    For pytest and notebooks: the same runs as the CLI, without worker processes. Raises on the
    first failure. Returns the number of runs per asset.
    """
    graph = dg.Definitions(assets=list(assets), resources=resources).resolve_asset_graph()
    by_key = {k: a for a in assets for k in a.keys}
    runs: dict[str, int] = {}
    for level in graph.toposorted_asset_keys_by_level:
        for key in sorted(level):
            if key not in by_key:
                continue
            keys = partition_keys_for(by_key[key], instance)
            for partition in keys:
                result = dg.materialize(
                    list(assets), selection=[key], partition_key=partition, instance=instance,
                    resources=resources, raise_on_error=True,
                )
                assert result.success
            runs[key.to_user_string()] = len(keys)
            log(f"{key.to_user_string()}: {len(keys)} run(s)")
    return runs

"""Materialize transformations from the command line: every partition of each selected asset,
one run per partition, at most N runs at once, assets in dependency order.

This is kube-transform's controller (submit jobs in dependency order, wait, go on) expressed
with Dagster's own pieces: each run is a real run in the instance under DAGSTER_HOME, executed
by the deployment's executor (multiprocess locally, one pod per step on Kubernetes). In the
UI the same thing is a backfill, run by the daemon.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.definitions.reconstruct import ReconstructableRepository

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
                return error.message.strip().splitlines()[0][:300]
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


def run_partition_in_subprocess(module: str, asset: str, partition: str | None) -> dict:
    """Each run in its own process, as Dagster's run launcher does: runs share nothing in memory
    (Dagster's in-process execution is not meant to be driven from several threads)."""
    logs = os.path.join(os.environ["DAGSTER_HOME"], "ktx-cli-logs", asset.replace("/", "__"))
    os.makedirs(logs, exist_ok=True)
    log_path = os.path.join(logs, f"{partition or 'all'}.log".replace("/", "_").replace("|", "_"))
    cmd = [sys.executable, "-m", "ktx_dagster", "run-partition", "--module", module, "--asset", asset]
    if partition is not None:
        cmd += ["--partition", partition]
    with open(log_path, "w") as log_file:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log_file, text=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return {**json.loads(line), "log": log_path}
    return {"success": False, "run_id": "-", "error": f"run process exited with {proc.returncode}", "log": log_path}


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
) -> list[AssetOutcome]:
    """Run every partition of the selected assets (default: all), upstream first."""
    recon_repo = ReconstructableRepository.for_module(module, "defs")
    repo_def = recon_repo.get_definition()
    graph = repo_def.asset_graph
    wanted = (
        dg.AssetSelection.from_coercible(list(selection)).resolve(graph)
        if selection
        else set(graph.materializable_asset_keys)
    )
    order = [key for level in graph.toposorted_asset_keys_by_level for key in sorted(level) if key in wanted]
    outcomes: list[AssetOutcome] = []
    failed_assets: set[dg.AssetKey] = set()
    for key in order:
        name = key.to_user_string()
        outcome = AssetOutcome(asset=name)
        outcomes.append(outcome)
        if graph.get(key).parent_keys & failed_assets:
            outcome.skipped = True
            failed_assets.add(key)
            log(f"{name}: skipped, an upstream transformation failed")
            continue
        asset_def = repo_def.assets_defs_by_key[key]
        keys = partition_keys_for(asset_def, instance)
        if only_partitions is not None:
            keys = [k for k in keys if k in set(only_partitions)]
        if not keys:
            log(f"{name}: no partitions yet (no input files under the data dir?)")
            continue
        log(f"{name}: {len(keys)} partition(s), up to {max_concurrent} at once")
        started = time.perf_counter()

        def run_one(partition: str | None):
            t0 = time.perf_counter()
            return partition, run_partition_in_subprocess(module, name, partition), time.perf_counter() - t0

        with ThreadPoolExecutor(max_workers=max_concurrent) as pool:
            futures = [pool.submit(run_one, k) for k in keys]
            for done, future in enumerate(as_completed(futures), 1):
                partition, result, seconds = future.result()
                label = f"{name}[{partition}]" if partition is not None else name
                if result["success"]:
                    outcome.succeeded.append(str(partition))
                    log(f"  [{done}/{len(keys)}] {label} ok in {seconds:.1f}s (run {result['run_id'][:8]})")
                else:
                    outcome.failed[str(partition)] = result["error"]
                    log(f"  [{done}/{len(keys)}] {label} FAILED (run {str(result['run_id'])[:8]}): {result['error']}")
                    if result.get("log"):
                        log(f"      log: {result['log']}")
        outcome.seconds = time.perf_counter() - started
        if outcome.failed:
            failed_assets.add(key)
    return outcomes

"""Sensors: new input files become new partitions, and runs that materialize just those.

For every `FilePartitions` source (one task per input file) `file_partitions_sensor` lists the
source's folder under the data dir on each tick. Files it has not seen before become dynamic
partition keys (`SensorResult.dynamic_partitions_requests`), and each new key gets one run of
the assets partitioned by that source (`run_requests`, queued by the instance's run
coordinator, so the run queue's concurrency limit applies).

The cursor is the set of keys the sensor has handled. On its very first tick the sensor adopts
the partitions already registered (by `ktx sync` / `make dev`): those are
materialized by a backfill or the CLI, not re-run behind the user's back. A file that
disappears is simply no longer listed: its partition, runs and materializations stay, and the
key stays in the cursor, so putting the file back does not re-run it (launch a run for it from
the UI to refresh it). Run keys are the partition keys, so a tick that is retried after a
crash never launches a second run for the same file.

ChunkedPartitions built on a file source (10 MPD slices -> one part) get no sensor of their
own: the files' sensor registers their new chunk keys too, as `sync` does, without runs.

Scale (docs/scale.md): up to `partitions.REGISTER_BATCH` new keys go to the daemon as the
tick's request; more are registered by the tick itself in batches, as `ktx sync` registers them
(the daemon checks a request key by key, and Dagster's one add of 36,000 keys fails on SQLite,
dagster-io/dagster#16260). A tick requests at most
`KTX_SENSOR_MAX_RUNS_PER_TICK` runs (default 1000), because the daemon creates every requested
run inside the tick: 100,000 new files are all registered at once and run 1000 per tick. A
quiet tick reads the folder and its cursor, not the registered keys. Past
`partitions.SQLITE_PARTITIONS_WARN` partitions on a SQLite instance the tick logs a warning saying how to
move to PostgreSQL.

Settings (environment of the code location): `KTX_SENSOR_INTERVAL_SECONDS` (default 30),
`KTX_SENSOR_MAX_RUNS_PER_TICK` (default 1000) and
`KTX_SENSOR_DEFAULT_STATUS` (`running`, the default: one directory listing per interval is
cheap; or `stopped`, then turn it on in the UI under Automation).
"""

import json
import os
from collections.abc import Iterable, Sequence

import dagster as dg

from ktx_dagster import partitions
from ktx_dagster.data_dir import DataDir
from ktx_dagster.partitions import (
    ChunkedPartitions,
    FilePartitions,
    natural_sorted,
    partition_sources,
    sqlite_scale_warning,
)

DEFAULT_INTERVAL_SECONDS = 30
DEFAULT_MAX_RUNS_PER_TICK = 1000
SENSOR_TAG = "ktx/sensor"


def _positive_int_env(name: str, default: int, what: str) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name}={raw!r} must be {what} >= 1")
    return int(raw)


def sensor_interval_seconds() -> int:
    return _positive_int_env("KTX_SENSOR_INTERVAL_SECONDS", DEFAULT_INTERVAL_SECONDS, "a whole number of seconds")


def sensor_max_runs_per_tick() -> int:
    return _positive_int_env("KTX_SENSOR_MAX_RUNS_PER_TICK", DEFAULT_MAX_RUNS_PER_TICK, "a whole number")


def sensor_default_status() -> dg.DefaultSensorStatus:
    raw = os.environ.get("KTX_SENSOR_DEFAULT_STATUS", "running").strip().lower()
    if raw not in ("running", "stopped"):
        raise ValueError(f"KTX_SENSOR_DEFAULT_STATUS={raw!r} must be 'running' or 'stopped'")
    return dg.DefaultSensorStatus.RUNNING if raw == "running" else dg.DefaultSensorStatus.STOPPED


def _decode_cursor(cursor: str | None) -> set[str] | None:
    if not cursor:
        return None
    data = json.loads(cursor)
    return set(data["keys"])


def _encode_cursor(keys: Iterable[str]) -> str:
    # sorted, not natural_sorted: the order only keeps the text stable, and 100,000 keys sort
    # in a tenth of the time (decoding reads a set).
    return json.dumps({"keys": sorted(set(keys))}, separators=(",", ":"))


def _register(
    instance: dg.DagsterInstance, definition: dg.DynamicPartitionsDefinition, keys: list[str]
) -> list[dg.AddDynamicPartitionsRequest]:
    """New keys: up to one batch as the tick's request (the UI lists them on the tick); more are
    registered here, in batches, as `ktx sync` does. The daemon checks each key of a request with
    a query of its own (on SQLite a new engine per key, dagster/_daemon/sensor.py in 1.13):
    10,000 keys took it 104 s where batches take 0.7 s (docs/scale.md)."""
    if len(keys) <= partitions.REGISTER_BATCH:
        return [definition.build_add_request(keys)] if keys else []
    partitions.register_partitions(instance, definition.name, keys)
    return []


def assets_partitioned_by(source: FilePartitions, assets: Iterable[dg.AssetsDefinition]) -> list[dg.AssetKey]:
    """Keys of the assets whose partitions are the source's dynamic partitions."""
    keys = []
    for asset in assets:
        pd = asset.partitions_def
        if isinstance(pd, dg.DynamicPartitionsDefinition) and pd.name == source.name:
            keys.extend(asset.keys)
    return sorted(keys, key=lambda k: k.to_user_string())


def file_partitions_sensor(
    source: FilePartitions,
    asset_keys: Sequence[dg.AssetKey],
    *,
    name: str | None = None,
    minimum_interval_seconds: int | None = None,
    default_status: dg.DefaultSensorStatus | None = None,
    chunked: Sequence[ChunkedPartitions] = (),
    max_runs_per_tick: int | None = None,
) -> dg.SensorDefinition:
    """A sensor adding a partition per new file of `source`, with one run of `asset_keys` each.

    `chunked`: ChunkedPartitions built on `source` (10 slices -> one part); their new chunk keys
    are registered along with the files, as `sync` does, but get no runs (a chunk is usually
    completed by later files: materialize parts with a backfill once the files are in).
    """
    if not asset_keys:
        raise ValueError(f"file_partitions_sensor({source.name!r}): no assets to run")
    selection = list(asset_keys)
    max_runs = max_runs_per_tick or sensor_max_runs_per_tick()
    listed = ", ".join(k.to_user_string() for k in selection)

    @dg.sensor(
        name=name or f"{source.name}_sensor",
        asset_selection=selection,
        minimum_interval_seconds=minimum_interval_seconds or sensor_interval_seconds(),
        default_status=default_status or sensor_default_status(),
        description=(
            f"New files {source.directory}/{source.pattern} under the data dir become partitions "
            f"of {source.name!r}; each new partition gets a run of {listed}. Removing a file "
            "never deletes a partition or its history."
        ),
    )
    # data_dir: the code location's own, the one its IO manager and transformations use.
    # (No postponed annotations in this module: Dagster reads this one to inject the resource.)
    def _sensor(context: dg.SensorEvaluationContext, data_dir: DataDir) -> dg.SensorResult | dg.SkipReason:
        root = data_dir.path
        present = source.present(root)
        handled = _decode_cursor(context.cursor)
        registered: set[str] | None = None
        if handled is None:
            # First tick: partitions registered before the sensor ran are already taken care of.
            handled = registered = set(context.instance.get_dynamic_partitions(source.name))
        new = natural_sorted(k for k in present if k not in handled)
        if not new:
            # The quiet tick, every interval: neither the registered keys (all of them, from the
            # database) nor a new cursor are needed when nothing is new.
            return dg.SensorResult(
                skip_reason=dg.SkipReason(f"no new files in {root / source.directory} ({len(present)} present)"),
                cursor=context.cursor or _encode_cursor(handled),
            )
        if registered is None:
            registered = set(context.instance.get_dynamic_partitions(source.name))
        to_add = [k for k in new if k not in registered]
        requests = _register(context.instance, source.definition, to_add)
        total = len(registered) + len(to_add)
        for chunks in chunked:
            have = set(context.instance.get_dynamic_partitions(chunks.name))
            requests += _register(context.instance, chunks.definition,
                                  [k for k in chunks.keys_for_count(total) if k not in have])
        # A bounded tick: the daemon creates every requested run inside the tick, so a drop of
        # 100,000 files is run max_runs at a time, tick after tick; all are registered at once
        # (a backfill can take them all). The cursor holds only the keys that got their run.
        run_now = new[:max_runs]
        cursor = _encode_cursor(handled | set(run_now))
        context.log.info(
            f"{len(new)} new file(s) under {root / source.directory}: {', '.join(new[:20])}"
            + (" ..." if len(new) > 20 else "")
            + (f"; runs for the first {len(run_now)} now, the rest on the next ticks" if len(run_now) < len(new) else "")
        )
        if warning := sqlite_scale_warning(context.instance, source.name, total):
            context.log.warning(warning)
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=key,
                    partition_key=key,
                    asset_selection=selection,
                    tags={SENSOR_TAG: source.name},
                )
                for key in run_now
            ],
            dynamic_partitions_requests=requests,
            cursor=cursor,
        )

    return _sensor


def file_sensors(
    assets: Iterable[dg.AssetsDefinition], sources: Iterable[object] | None = None, **kwargs
) -> list[dg.SensorDefinition]:
    """One sensor per FilePartitions source that some asset is partitioned by.

    sources: default, the ones the assets were declared with (`@transformation(partitions=...)`
    records them). ChunkedPartitions sources get no sensor of their own: their keys are
    registered by the sensor of the files they chunk.
    """
    assets = list(assets)
    sources = partition_sources(assets) if sources is None else list(sources)
    sensors = []
    for source in sources:
        if not isinstance(source, FilePartitions):
            continue
        keys = assets_partitioned_by(source, assets)
        chunked = [c for c in sources if isinstance(c, ChunkedPartitions) and c.upstream == source]
        if keys:
            sensors.append(file_partitions_sensor(source, keys, chunked=chunked, **kwargs))
    return sensors

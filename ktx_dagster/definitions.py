"""`definitions_for`: a code location's Definitions from a user's transformations, wired for
the current deployment.

    # my_project/definitions.py
    import ktx_dagster
    from my_project import transformations

    defs = ktx_dagster.definitions_for(assets=[transformations])

What it wires, from `KTX_DEPLOYMENT` (local, minikube, eks) unless told otherwise:
- resources: `data_dir` (KTX_DATA_DIR) and the IO manager on that same data dir;
- the executor: the local one, or a Kubernetes Job per step;
- one file sensor per file-backed partitions source (`FilePartitions`), taken from the
  assets' own declarations: new input files become partitions and runs;
- the asset checks given, beside Dagster's own definitions (jobs, schedules, sensors...).
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from typing import Any

import dagster as dg

from ktx_dagster.data_dir import DataDir
from ktx_dagster.deployment import deployment as deployment_from_env
from ktx_dagster.deployment import executor_for
from ktx_dagster.io_manager import DataDirIOManager, data_resources
from ktx_dagster.sensors import file_sensors


def _assets(items: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        out.extend(dg.load_assets_from_modules([item]) if isinstance(item, types.ModuleType) else [item])
    return out


def _checks(items: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        out.extend(dg.load_asset_checks_from_modules([item]) if isinstance(item, types.ModuleType) else [item])
    return out


def wired_resources(resources: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`data_dir` and `io_manager` (on that data dir) unless given, plus the other resources.

    Giving only `data_dir` moves the IO manager with it: the data root has one source of truth.
    """
    given = dict(resources or {})
    data_dir = given.get("data_dir")
    if data_dir is None:
        wired = data_resources()
    elif isinstance(data_dir, DataDir):
        wired = {"data_dir": data_dir, "io_manager": DataDirIOManager(data_dir=data_dir)}
    else:
        raise TypeError(f"definitions_for: resources['data_dir'] must be a ktx_dagster.DataDir, got {type(data_dir).__name__}")
    return {**wired, **given}


def definitions_for(
    assets: Iterable[Any] = (),
    asset_checks: Iterable[Any] = (),
    *,
    resources: Mapping[str, Any] | None = None,
    executor: dg.ExecutorDefinition | dg.Executor | None = None,
    deployment: str | None = None,
    sensors: Iterable[dg.SensorDefinition] = (),
    file_sensors_enabled: bool = True,
    **definitions: Any,
) -> dg.Definitions:
    """A code location's `Definitions` for `deployment` (default: env KTX_DEPLOYMENT).

    assets / asset_checks: definitions, or modules to collect them from. resources: added to
    (or replacing) `data_dir` and `io_manager`. executor: default, the deployment's.
    file_sensors_enabled: one sensor per FilePartitions source the assets declare. Other
    keyword arguments (jobs, schedules, metadata, ...) go to `dg.Definitions` unchanged.
    """
    name = deployment_from_env(deployment)
    all_assets = _assets(assets)
    all_sensors = list(sensors)
    if file_sensors_enabled:
        taken = {s.name for s in all_sensors}
        all_sensors += [s for s in file_sensors(all_assets) if s.name not in taken]
    return dg.Definitions(
        assets=all_assets,
        asset_checks=_checks(asset_checks),
        sensors=all_sensors,
        resources=wired_resources(resources),
        executor=executor if executor is not None else executor_for(name),
        **definitions,
    )

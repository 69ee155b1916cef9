"""Every partition of a set of transformations, in this process: for pytest and notebooks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import dagster as dg

from ktx_dagster.partitions import partition_keys_for


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

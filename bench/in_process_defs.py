"""Bench-only code location: the project's definitions with Dagster's in-process executor.

`python bench/backfill.py --executor in_process` loads this instead of ktx_dagster.definitions
to measure what one process per run (the run worker executes the task itself) saves over
the local multiprocess executor (run worker + one process per step).
"""

import dagster as dg

from ktx_dagster.definitions import defs as _defs

defs = dg.Definitions(
    assets=_defs.assets,
    asset_checks=_defs.asset_checks,
    sensors=_defs.sensors,
    resources=_defs.resources,
    executor=dg.in_process_executor,
)

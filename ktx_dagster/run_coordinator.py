"""Dagster's run queue, started runs checked for twice a second instead of once.

A backfill of N partitions is N queued runs. The daemon starts queued runs on a fixed tick
(`dequeue_interval_seconds`): a slot freed by a run that ended waits for the next tick. Once
a one-partition run costs 0.2 s (ktx_dagster/local_storage.py), a 1 s tick, the least
Dagster's config accepts (whole seconds), left each slot idle most of the time: 0.6 s per
partition at 2 slots for a 0.2 s run. This queue takes fractions of a second; the daemon's
loop itself waits in 0.5 s steps, so 0.5 is the useful least. An idle tick is one query of
the run storage.

    run_coordinator:
      module: ktx_dagster.run_coordinator
      class: RunQueue
      config:
        max_concurrent_runs: 2
        dequeue_interval_seconds: 0.5

Everything else is Dagster's QueuedRunCoordinator, with the same settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg


class RunQueue(dg.QueuedRunCoordinator):
    _interval: float | None = None

    @classmethod
    def config_type(cls):
        fields = dict(super().config_type())
        fields["dequeue_interval_seconds"] = dg.Field(
            float, is_required=False,
            description="Seconds between the daemon's starts of queued runs (fractions allowed; 0.5 at least "
                        "in effect: the daemon's loop waits in 0.5 s steps). Default 5, as Dagster's.",
        )
        return fields

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Mapping[str, Any]) -> RunQueue:
        config = dict(config_value)
        interval = config.pop("dequeue_interval_seconds", None)
        if interval is not None and interval <= 0:
            raise dg.DagsterInvalidConfigError(
                f"run_coordinator.config.dequeue_interval_seconds is {interval}: give a positive number of "
                "seconds (0.5 or more; 0 would make the daemon poll the run storage without pause)", [], config_value,
            )
        queue = super().from_config_value(inst_data, config)
        queue._interval = interval
        return queue

    @property
    def dequeue_interval_seconds(self) -> float:
        return self._interval if self._interval is not None else super().dequeue_interval_seconds

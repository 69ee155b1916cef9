"""A code location for the restart tests: tasks that take a couple of seconds and leave a
record of every attempt, so a test can tell whether a partition ran twice, at once, or never.

Loaded by the real webserver and daemon as a `python_file` (tests/ui/test_restart_during_backfill.py
writes the workspace). `slow_task` has PARTITIONS static partitions; each attempt writes
`<data dir>/attempts/<partition>.<run id>.<pid>.json` with its start, then again with its end
(wall-clock seconds, comparable across processes). No retries: one successful attempt per
partition is the whole promise.

While `<data dir>/hold` exists, a task that has slept its time waits for it to go: the test
holds the runs in flight across a restart, so the new daemon meets them still running.
"""

import json
import os
import time

import dagster as dg

import ktx_dagster
from ktx_dagster import DataDir, transformation

PARTITIONS = [f"p{i:02d}" for i in range(8)]
ATTEMPTS_DIR = "attempts"
HOLD_FILE = "hold"
SECONDS_ENV = "KTX_TEST_TASK_SECONDS"


def _record(path, attempt: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(attempt))
    os.replace(tmp, path)  # a reader never sees half a record


@transformation(partitions=PARTITIONS, cpu="100m", memory="100Mi", retries=0, format="text")
def slow_task(context: dg.AssetExecutionContext, data_dir: DataDir) -> str:
    """Sleeps KTX_TEST_TASK_SECONDS (default 2), and while the hold file exists; records
    when, where and in which run."""
    folder = data_dir.path / ATTEMPTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    key, pid = context.partition_key, os.getpid()
    path = folder / f"{key}.{context.run.run_id}.{pid}.json"
    attempt = {"partition": key, "run_id": context.run.run_id, "pid": pid, "start": time.time(), "end": None}
    _record(path, attempt)
    time.sleep(float(os.environ.get(SECONDS_ENV, "2")))
    hold, deadline = data_dir.path / HOLD_FILE, time.monotonic() + 120
    while hold.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    attempt["end"] = time.time()
    _record(path, attempt)
    return f"{key} done by {pid}\n"


defs = ktx_dagster.definitions_for(assets=[slow_task])

"""Steps that take their time, for the disruption and straggler tests: loaded by file path by
the test's code server and by every step "pod" (it imports nothing but ktx_dagster)."""

import os
import time
from pathlib import Path

import ktx_dagster

GO_FILE = "go"  # the test drops it into the data dir when the step may finish


@ktx_dagster.transformation(partitions=["only"], cpu="100m", memory="200Mi", retries=0)
def patient(context) -> str:
    """Waits for the test's go-ahead, so its pod can be evicted while it runs; retries=0, so
    only a restart that is not a retry gets it through."""
    go = Path(os.environ["KTX_DATA_DIR"]) / GO_FILE
    print(f"patient waiting for {go} in pod {os.environ.get('HOSTNAME', '?')}", flush=True)
    deadline = time.monotonic() + 120
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return f"done in {os.environ.get('HOSTNAME', '?')}"


@ktx_dagster.transformation(partitions=["only"], cpu="100m", memory="200Mi", expected_duration=1)
def slow(context) -> str:
    """Expected to take a second; takes eight."""
    time.sleep(8)
    return "late"


defs = ktx_dagster.definitions_for(assets=[patient, slow], deployment="minikube", file_sensors_enabled=False)

"""A code location with one transformation that talks: a known line to stdout and to stderr,
then (partition "fails") an error, (partition "crash") a process that dies without a word to
Dagster, or (partition "slow") a long wait until the run is terminated.
What the step logs and RBAC tests run; its step pods run on the emulated cluster (it imports
nothing but ktx_dagster)."""

import os
import sys
import time

import ktx_dagster

STDOUT_LINE = "chatty says on stdout: rows read 4242"
STDERR_LINE = "chatty says on stderr: 7 rows skipped"


@ktx_dagster.transformation(partitions=["ok", "fails", "crash", "slow"], cpu="100m", memory="200Mi")
def chatty(context) -> str:
    """Prints what a user's step prints, then fails for partition 'fails': the output of a
    failed pod is what people open the logs for."""
    print(f"{STDOUT_LINE} [{context.partition_key}]")
    print(f"{STDERR_LINE} [{context.partition_key}]", file=sys.stderr)
    if context.partition_key == "fails":
        raise RuntimeError("chatty fails on purpose, after printing")
    if context.partition_key == "crash":
        sys.stdout.flush()
        os._exit(3)  # as a segfault or an OOM kill: only the pod's status tells
    if context.partition_key == "slow":
        time.sleep(120)  # until the run is terminated
    return "said it"


defs = ktx_dagster.definitions_for(assets=[chatty], deployment="minikube", file_sensors_enabled=False)

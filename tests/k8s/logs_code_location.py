"""A code location with one transformation that talks: a known line to stdout and to stderr,
then (partition "fails") an error. What the step logs tests look for in the UI's captured
logs; its step pods run on the emulated cluster (it imports nothing but ktx_dagster)."""

import sys

import ktx_dagster

STDOUT_LINE = "chatty says on stdout: rows read 4242"
STDERR_LINE = "chatty says on stderr: 7 rows skipped"


@ktx_dagster.transformation(partitions=["ok", "fails"], cpu="100m", memory="200Mi")
def chatty(context) -> str:
    """Prints what a user's step prints, then fails for partition 'fails': the output of a
    failed pod is what people open the logs for."""
    print(f"{STDOUT_LINE} [{context.partition_key}]")
    print(f"{STDERR_LINE} [{context.partition_key}]", file=sys.stderr)
    if context.partition_key == "fails":
        raise RuntimeError("chatty fails on purpose, after printing")
    return "said it"


defs = ktx_dagster.definitions_for(assets=[chatty], deployment="minikube", file_sensors_enabled=False)

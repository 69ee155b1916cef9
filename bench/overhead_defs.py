"""The code location of bench/run_overhead.py: Hello World as shipped, and the floor, a
transformation over the same input files that does nothing (no checks, an empty output)."""

import ktx_dagster
from assets import hello_world
from assets.inputs import HELLO_WORLD_FILES
from ktx_dagster import transformation


@transformation(partitions=HELLO_WORLD_FILES, cpu="200m", memory="250Mi", format="text", group="bench")
def empty_task() -> str:
    """The floor: what a partition costs through the same path when its task costs nothing."""
    return ""


defs = ktx_dagster.definitions_for(assets=[hello_world, empty_task])

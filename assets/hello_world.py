"""Hello World: one task per file `<data>/hello_world/raw/part_*.txt`; each output is the input
with every line prefixed by `Hello World: ` (kube-transform's first example, 250Mi / 200m)."""

import dagster as dg

from assets.checks import HELLO_WORLD_CHECKS
from assets.inputs import HELLO_WORLD_FILES
from assets.logic.greeting import greet_lines
from ktx_dagster import DataDir, transformation

__all__ = ["HELLO_WORLD_FILES", "hello_world"]


@transformation(
    partitions=HELLO_WORLD_FILES,
    cpu="200m",
    memory="250Mi",
    retries=1,
    format="text",
    group="hello_world",
    checks=HELLO_WORLD_CHECKS,
)
def hello_world(context: dg.AssetExecutionContext, data_dir: DataDir) -> str:
    """Greets every line of one input file."""
    path = HELLO_WORLD_FILES.path_for(data_dir.path, context.partition_key)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: input of partition {context.partition_key!r} is missing; restore the file "
            "or leave the partition out of the run"
        ) from None
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path}: byte {exc.start} is not UTF-8 ({exc.reason}); save the file as UTF-8 text "
            "and re-run this partition"
        ) from None
    greeted = greet_lines(text)
    context.log.info(f"{path.name}: {greeted.count(chr(10))} lines greeted")
    return greeted

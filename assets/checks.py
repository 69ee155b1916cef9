"""Hello World's asset checks, run in each partition's own step right after its output is
stored (`@transformation(checks=HELLO_WORLD_CHECKS)` in assets/hello_world.py).

- every_line_greeted: each line of the output starts with the greeting prefix;
- line_count_matches_input: the output has as many lines as the input file it came from;
- non_empty (a warning only: an empty input file is legal, but probably a mistake).
"""

from assets.inputs import HELLO_WORLD_FILES
from assets.logic.greeting import PREFIX
from ktx_dagster.checks import CheckContext, all_lines, check, count_rows, non_empty


@check("line_count_matches_input", "The output has exactly as many lines as its input file.")
def line_count_matches_input(output: str, ctx: CheckContext):
    source = HELLO_WORLD_FILES.path_for(ctx.root, ctx.partition_key)
    if not source.exists():
        return False, {"input": str(source), "error": "input file is gone"}
    expected = count_rows(source.read_bytes().decode("utf-8"))
    got = count_rows(output)
    return got == expected, {"input": str(source), "input_lines": expected, "output_lines": got}


HELLO_WORLD_CHECKS = (
    all_lines(
        lambda line: line.startswith(PREFIX),
        name="every_line_greeted",
        description=f"Every line of the output starts with {PREFIX!r}.",
    ),
    line_count_matches_input,
    non_empty().warn(),
)

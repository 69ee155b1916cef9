"""Sample inputs for Hello World, written into the data dir by `python -m ktx_dagster sample`."""

from upath import UPath

from assets.hello_world import HELLO_WORLD_FILES


def write_hello_world_sample(root: UPath, parts: int = 4, lines: int = 3) -> list[UPath]:
    """Write part_1.txt .. part_N.txt (existing files are kept, so user edits survive)."""
    folder = root / HELLO_WORLD_FILES.directory
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(1, parts + 1):
        path = folder / HELLO_WORLD_FILES.filename_for(f"part_{i}")
        if not path.exists():
            path.write_text("".join(f"line {j} of part {i}\n" for j in range(1, lines + 1)))
            written.append(path)
    return written

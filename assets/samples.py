"""Hello World's sample inputs, and a look at its outputs.

    python -m assets.samples write [--parts 4]    # part_1.txt .. part_N.txt under <data>/hello_world/raw
    python -m assets.samples show                 # print every output
"""

from __future__ import annotations

import argparse
import sys

from upath import UPath

from assets.hello_world import HELLO_WORLD_FILES
from ktx_dagster import data_root


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


def show_outputs(root: UPath) -> int:
    missing = 0
    print("Hello World outputs:")
    for key in HELLO_WORLD_FILES.discover(root):
        path = root / "hello_world" / f"{key}.txt"
        print(f"--- {path}")
        if path.exists():
            print(path.read_text(), end="")
        else:
            print("(missing)")
            missing += 1
    return 1 if missing else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assets.samples", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("write", help="write the sample inputs").add_argument("--parts", type=int, default=4)
    sub.add_parser("show", help="print the outputs")
    args = parser.parse_args(argv)
    root = data_root()
    if args.command == "write":
        written = write_hello_world_sample(root, parts=args.parts)
        print(f"Hello World sample: {len(written)} new file(s) under {root / HELLO_WORLD_FILES.directory}")
        return 0
    return show_outputs(root)


if __name__ == "__main__":
    sys.exit(main())

"""`python -m ktx_dagster`: sample data, partition discovery and materialization from a shell.

    python -m ktx_dagster demo                 # sample data, every partition of everything
    python -m ktx_dagster sync                 # register partitions for new input files
    python -m ktx_dagster materialize --select hello_world [--partition part_1 ...]
    python -m ktx_dagster sample               # write Hello World sample inputs

Runs are recorded in the instance under DAGSTER_HOME (see the README), so the UI shows them.
"""

from __future__ import annotations

import argparse
import os
import sys

import dagster as dg

from resources.data_dir import data_root


def _instance() -> dg.DagsterInstance:
    if not os.environ.get("DAGSTER_HOME"):
        sys.exit("DAGSTER_HOME is not set: point it at a folder (make sets ./.dagster_home)")
    os.makedirs(os.environ["DAGSTER_HOME"], exist_ok=True)
    # deploy/local/dagster.yaml reads the run queue's limit from env (make exports 2); the CLI
    # does not use the queue, so a shell without make must not fail on it.
    os.environ.setdefault("KTX_MAX_CONCURRENT_RUNS", "2")
    return dg.DagsterInstance.get()


def cmd_sample(args: argparse.Namespace) -> None:
    from assets.samples import write_hello_world_sample

    root = data_root()
    written = write_hello_world_sample(root, parts=args.parts)
    print(f"Hello World sample: {len(written)} new file(s) under {root / 'hello_world/raw'}")


def cmd_sync(args: argparse.Namespace, instance: dg.DagsterInstance | None = None) -> None:
    from ktx_dagster.definitions import PARTITION_SOURCES

    instance = instance or _instance()
    root = data_root()
    for source in PARTITION_SOURCES:
        new = source.sync(instance, root)
        total = len(instance.get_dynamic_partitions(source.name))
        print(f"partitions {source.name}: {total} ({len(new)} new)")


def cmd_materialize(args: argparse.Namespace, instance: dg.DagsterInstance | None = None) -> int:
    from executors import max_concurrent
    from ktx_dagster.launch import materialize

    instance = instance or _instance()
    cmd_sync(args, instance)
    outcomes = materialize(
        args.select, instance, args.max_concurrent or max_concurrent(), only_partitions=args.partition,
        missing_only=getattr(args, "missing", False),
    )
    print("\nsummary:")
    failed = 0
    for o in outcomes:
        state = "skipped" if o.skipped else f"{len(o.succeeded)} ok, {len(o.failed)} failed"
        print(f"  {o.asset:<28} {state:<20} {o.seconds:6.1f}s")
        failed += len(o.failed) + o.skipped
    if failed:
        print("After a fix, re-run what failed or never ran: python -m ktx_dagster materialize --missing")
    return 1 if failed else 0


def write_spotify_sample(root) -> None:
    """The mini contest's synthetic MPD slices + challenge set, unless slices are there already
    (real MPD files dropped into <data>/spotify_mpc/raw/ are used as they are)."""
    from spotify_mpc.assets import RAW_DIR, SLICE_FILES
    from spotify_mpc.generate import main as generate
    from spotify_mpc.sizes import get_size

    if SLICE_FILES.discover(root):
        print(f"Spotify MPD: using the slices under {root / RAW_DIR}")
        return
    size = get_size()
    print(f"Spotify MPD: generating the {size.name!r} contest ({size.slices} slices) under {root / RAW_DIR}")
    generate(["--slices", str(size.slices), "--out", str(root / RAW_DIR), "--seed", "0",
              "--challenge-size", str(size.official_challenge_size),
              "--playlists-per-slice", str(size.playlists_per_slice), "--quiet"])


def cmd_demo(args: argparse.Namespace) -> int:
    from assets.hello_world import HELLO_WORLD_FILES

    root = data_root()
    cmd_sample(argparse.Namespace(parts=4))
    write_spotify_sample(root)
    instance = _instance()
    code = cmd_materialize(
        argparse.Namespace(select=None, partition=None, max_concurrent=args.max_concurrent, missing=False), instance
    )
    print("\nHello World outputs:")
    for key in HELLO_WORLD_FILES.discover(root):
        path = root / "hello_world" / f"{key}.txt"
        print(f"--- {path}")
        print(path.read_text() if path.exists() else "(missing)", end="")
    evaluation = instance.get_latest_materialization_event(dg.AssetKey("evaluation"))
    if evaluation is not None:
        meta = evaluation.asset_materialization.metadata
        print("\nSpotify mini contest, evaluation of the model against the popularity baseline")
        print("(R-precision and NDCG: higher is better; clicks: lower is better):\n")
        print(meta["scores"].value)
        print(f"Official export: {root / 'challenge_submission.txt'}")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ktx_dagster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sample", help="write Hello World sample inputs")
    p.add_argument("--parts", type=int, default=4)
    sub.add_parser("sync", help="register partitions for the input files present now")
    for name in ("materialize", "demo"):
        p = sub.add_parser(name)
        p.add_argument("--max-concurrent", type=int, default=None, help="runs at once (default KTX_MAX_CONCURRENT or #CPUs)")
        if name == "materialize":
            p.add_argument("--select", nargs="*", default=None, help="asset selection (default: all)")
            p.add_argument("--partition", nargs="*", default=None, help="only these partition keys")
            p.add_argument("--missing", action="store_true",
                           help="only partitions not materialized yet (reuse finished work, re-run failures)")
    args = parser.parse_args(argv)
    if args.command == "sample":
        cmd_sample(args)
        return 0
    if args.command == "sync":
        cmd_sync(args)
        return 0
    if args.command == "materialize":
        return cmd_materialize(args)
    return cmd_demo(args)


if __name__ == "__main__":
    sys.exit(main())

"""The Spotify example's inputs (a synthetic contest in the real formats), and its results.

    python -m spotify_mpc.samples write    # slices + challenge set under <data>/spotify_mpc/raw
    python -m spotify_mpc.samples show     # the evaluation table (DAGSTER_HOME's instance)

The contest size is KTX_SPOTIFY_SIZE (mini by default; see spotify_mpc/sizes.py). Real MPD
files dropped into <data>/spotify_mpc/raw/ are used as they are.
"""

from __future__ import annotations

import argparse
import sys

import dagster as dg
from upath import UPath

from ktx_dagster import data_root
from spotify_mpc.assets import RAW_DIR, SLICE_FILES
from spotify_mpc.sizes import get_size


def write_spotify_sample(root: UPath) -> None:
    """The contest's synthetic MPD slices + challenge set, unless slices are there already."""
    from spotify_mpc.generate import main as generate

    if SLICE_FILES.discover(root):
        print(f"Spotify MPD: using the slices under {root / RAW_DIR}")
        return
    size = get_size()
    print(f"Spotify MPD: generating the {size.name!r} contest ({size.slices} slices) under {root / RAW_DIR}")
    generate(["--slices", str(size.slices), "--out", str(root / RAW_DIR), "--seed", "0",
              "--challenge-size", str(size.official_challenge_size),
              "--playlists-per-slice", str(size.playlists_per_slice), "--quiet"])


def show_evaluation(root: UPath) -> int:
    with dg.DagsterInstance.get() as instance:
        evaluation = instance.get_latest_materialization_event(dg.AssetKey("evaluation"))
    if evaluation is None:
        print("Spotify: no evaluation materialized yet")
        return 1
    meta = evaluation.asset_materialization.metadata
    print("\nSpotify contest, evaluation of the model against two baselines: co-occurrence only, popularity")
    print("(R-precision and NDCG: higher is better; clicks: lower is better):\n")
    print(meta["scores"].value)
    print(f"Official export: {root / 'challenge_submission.txt'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spotify_mpc.samples", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["write", "show"])
    args = parser.parse_args(argv)
    root = data_root()
    if args.command == "write":
        write_spotify_sample(root)
        return 0
    return show_evaluation(root)


if __name__ == "__main__":
    sys.exit(main())

"""Asset checks on the Spotify chain: bad data shows in the UI before anything trains on it.

Each transformation runs its rules in its own step, right after its output is stored
(`@transformation(checks=...)` in spotify_mpc/assets.py). Checks report, they do not block: a
failed check is a red mark on the asset's partition in the UI, and the run still materializes.
"""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ktx_dagster.checks import CheckContext, check, has_columns, non_empty, unique
from spotify_mpc.challenge import CATEGORIES


@check("pids_in_slice_range", "Every pid lies in the range the slice file names (mpd.slice.<a>-<b>.json).")
def pids_in_slice_range(frame: pd.DataFrame, ctx: CheckContext):
    first, last = (int(x) for x in str(ctx.partition_key).split("-"))
    pids = frame["pid"].to_numpy()
    outside = pids[(pids < first) | (pids > last)]
    return len(outside) == 0, {"range": f"{first}-{last}", "outside": int(len(outside)),
                               **({"examples": ", ".join(map(str, np.unique(outside)[:5]))} if len(outside) else {})}


@check("num_tracks_matches_rows", "Each playlist has as many track rows as its num_tracks says.")
def num_tracks_matches_rows(frame: pd.DataFrame, ctx: CheckContext):
    rows = frame.groupby("pid").size()
    declared = frame.groupby("pid")["num_tracks"].first()
    bad = rows[rows != declared]
    return bad.empty, {"playlists": int(len(rows)), "mismatched": int(len(bad)),
                       **({"examples": ", ".join(map(str, bad.index[:5]))} if len(bad) else {})}


unique_pid_pos = unique(["pid", "pos"])  # no playlist position appears twice


def _stored_rows(ctx: CheckContext, name: str) -> int:
    """Rows of a stored table from its footer only, local or S3: arrow (as assets.py stores
    `tracks`) or parquet (as it was stored before)."""
    arrow = ctx.path(f"{name}.arrow")
    if arrow.exists():
        with arrow.open("rb") as f:
            return pa.ipc.open_file(f).count_rows()
    with ctx.path(f"{name}.parquet").open("rb") as f:
        return pq.ParquetFile(f).metadata.num_rows


@check("track_ids_in_range", "Track ids are below the track table's size; statistics parts know every track.")
def track_ids_in_range(frame: pd.DataFrame, ctx: CheckContext):
    n_tracks = _stored_rows(ctx, "tracks")
    ids = frame["track_id"].to_numpy()
    too_big = int((ids >= n_tracks).sum())
    from spotify_mpc.assets import part_roles  # the assets import these rules

    statistics = ctx.instance is not None and str(ctx.partition_key) in part_roles(ctx).statistics
    unknown = int((ids < 0).sum())
    ok = too_big == 0 and not (statistics and unknown)
    return ok, {"tracks": n_tracks, "above_range": too_big, "unknown_tracks": unknown,
                "role": "statistics" if statistics else "held out"}


@check("categories_complete", "All 10 official categories, each with the same number of playlists.")
def categories_complete(frame: pd.DataFrame, ctx: CheckContext):
    per_category = frame.groupby("category")["pid"].nunique().reindex(range(len(CATEGORIES)), fill_value=0)
    ok = per_category.min() > 0 and per_category.nunique() == 1
    return ok, {"playlists_per_category": ", ".join(map(str, per_category.tolist()))}


@check("submission_rules", "500 distinct tracks per playlist, ranks 1..500, no seed track recommended.")
def submission_rules(frame: pd.DataFrame, ctx: CheckContext):
    sizes = frame.groupby("pid").size()
    wrong_size = int((sizes != 500).sum())
    repeated = int(frame.duplicated(["pid", "track_id"]).sum()) + int(frame.duplicated(["pid", "rank"]).sum())
    bad_rank = int(((frame["rank"] < 1) | (frame["rank"] > 500)).sum())
    with ctx.path("challenge_set.parquet").open("rb") as f:
        cs = pd.read_parquet(f, columns=["pid", "is_seed", "track_id"])
    seeds = cs.loc[cs["is_seed"], ["pid", "track_id"]]
    seed_hits = int(len(frame.merge(seeds, on=["pid", "track_id"])))
    missing = int(len(set(cs["pid"].unique()) - set(sizes.index)))
    ok = not (wrong_size or repeated or bad_rank or seed_hits or missing)
    return ok, {"playlists": int(len(sizes)), "not_500": wrong_size, "repeats": repeated,
                "ranks_out_of_range": bad_rank, "seeds_recommended": seed_hits, "playlists_missing": missing}


SLICE_CHECKS = (non_empty(), has_columns(["pid", "pos", "track_uri", "artist_uri", "num_tracks"]),
                pids_in_slice_range, num_tracks_matches_rows, unique_pid_pos)
PLAYLIST_CHECKS = (non_empty(), unique_pid_pos)
TRACK_CHECKS = (non_empty(), unique("track_uri"))
TRAIN_PLAYLIST_CHECKS = (non_empty(), unique_pid_pos, track_ids_in_range)
CHALLENGE_SET_CHECKS = (categories_complete, unique_pid_pos)
SUBMISSION_CHECKS = (submission_rules,)

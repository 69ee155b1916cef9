"""The Spotify asset checks on hand-made good and bad outputs (the stored files they consult
are real parquet / arrow files under a temp data root)."""

import logging

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from upath import UPath

from ktx_dagster.checks import CheckContext, evaluate
from ktx_dagster.formats import format_by_name
from spotify_mpc import checks as sc


def _ctx(tmp_path, partition=None, asset="x"):
    return CheckContext(asset_key=dg.AssetKey(asset), partition_key=partition, root=UPath(tmp_path),
                        log=logging.getLogger("test"))


def _results(rule, value, ctx):
    return {r.check_name: r for r in evaluate([rule], value, ctx)}[rule.name]


def test_slice_rules(tmp_path):
    good = pd.DataFrame({"pid": [0, 0, 1], "pos": [0, 1, 0], "num_tracks": [2, 2, 1]})
    ctx = _ctx(tmp_path, "0-999")
    for rule in (sc.pids_in_slice_range, sc.num_tracks_matches_rows, sc.unique_pid_pos):
        assert _results(rule, good, ctx).passed
    assert not _results(sc.pids_in_slice_range, good.assign(pid=[0, 0, 1000]), ctx).passed
    assert not _results(sc.num_tracks_matches_rows, good.assign(num_tracks=[3, 3, 1]), ctx).passed
    bad = _results(sc.unique_pid_pos, good.assign(pos=[0, 0, 0]), ctx)
    assert not bad.passed and bad.metadata["duplicated_rows"].value == 2


@pytest.mark.parametrize("fmt", ["arrow", "parquet"])  # tracks as assets.py stores it, and as it was stored before
def test_track_ids_in_range(tmp_path, fmt):
    stored = format_by_name(fmt)
    stored.write(pd.DataFrame({"track_uri": ["a", "b", "c"]}), str(tmp_path / f"tracks{stored.extension}"))
    ctx = _ctx(tmp_path, "0")
    assert _results(sc.track_ids_in_range, pd.DataFrame({"track_id": np.array([0, 2, -1], np.int32)}), ctx).passed
    result = _results(sc.track_ids_in_range, pd.DataFrame({"track_id": np.array([0, 3], np.int32)}), ctx)
    assert not result.passed and result.metadata["above_range"].value == 1


def test_categories_complete(tmp_path):
    frame = pd.DataFrame({"category": np.repeat(np.arange(10), 2), "pid": np.arange(20)})
    assert _results(sc.categories_complete, frame, _ctx(tmp_path)).passed
    assert not _results(sc.categories_complete, frame[frame.category != 9], _ctx(tmp_path)).passed


def test_submission_rules(tmp_path):
    pd.DataFrame({"pid": [7, 7], "is_seed": [True, False], "track_id": [900, 3]}).to_parquet(
        tmp_path / "challenge_set.parquet")
    good = pd.DataFrame({"pid": 7, "rank": np.arange(1, 501), "track_id": np.arange(500)})
    assert _results(sc.submission_rules, good, _ctx(tmp_path)).passed
    with_seed = good.assign(track_id=np.r_[900, np.arange(1, 500)])
    result = _results(sc.submission_rules, with_seed, _ctx(tmp_path))
    assert not result.passed and result.metadata["seeds_recommended"].value == 1
    short = _results(sc.submission_rules, good.iloc[:499], _ctx(tmp_path))
    assert not short.passed and short.metadata["not_500"].value == 1

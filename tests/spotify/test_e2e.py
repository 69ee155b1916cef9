"""The mini contest end to end through `steps` (in memory, no Dagster)."""

import json

import numpy as np
import pandas as pd

from spotify_mpc import mpd_io, steps, submission
from spotify_mpc.cooccurrence import KINDS


def test_model_beats_popularity_baseline(mini_contest):
    t = mini_contest["evaluation"].table
    overall = t[t.category == "overall"].set_index("method")
    assert overall.loc["model", "r_precision"] > overall.loc["popularity", "r_precision"]
    assert overall.loc["model", "ndcg"] > overall.loc["popularity", "ndcg"]
    assert overall.loc["model", "clicks"] < overall.loc["popularity", "clicks"]
    assert set(t.category) == {"overall", *steps.challenge.CATEGORY_NAMES}


def test_model_beats_cooccurrence_only_ranking(mini_contest):
    """The learned ranker earns its place: better than the same candidates by co-occurrence alone."""
    t = mini_contest["evaluation"].table
    cooc = t[t.method == "cooccurrence"]
    assert set(cooc.category) == {"overall", *steps.challenge.CATEGORY_NAMES}
    overall = t[t.category == "overall"].set_index("method")
    assert overall.loc["cooccurrence", "r_precision"] > overall.loc["popularity", "r_precision"]
    assert overall.loc["model", "r_precision"] > overall.loc["cooccurrence", "r_precision"]
    assert overall.loc["model", "ndcg"] > overall.loc["cooccurrence", "ndcg"]


def test_submission_lists(mini_contest):
    sub = mini_contest["submission"]
    cs = mini_contest["challenge_set"]
    assert set(sub.pid) == set(cs.pid)
    counts = sub.groupby("pid").track_id.nunique()
    assert (counts == 500).all()
    seeds = cs[cs.is_seed][["pid", "track_id"]]
    assert len(seeds.merge(sub, on=["pid", "track_id"])) == 0


def test_official_export_passes_verifier(mini_contest, mini_dir, mini_size):
    text = mini_contest["challenge_submission"]
    cs = mpd_io.read_challenge_set(mini_dir / "challenge_set.json")
    assert submission.verify(text, cs) == mini_size.official_challenge_size


def test_outputs_are_storable_types(mini_contest):
    assert isinstance(mini_contest["tracks"], pd.DataFrame)
    json.dumps(mini_contest["model"])  # the model is a JSON document
    assert isinstance(mini_contest["challenge_submission"], str)
    for df in mini_contest["cooccurrence"].values():
        assert isinstance(df, pd.DataFrame) and list(df.columns) == ["key", "partner", "count"]
    assert len(mini_contest["cooccurrence"]) == len(KINDS) * 2


def test_challenge_keys_cover_all_sets(mini_contest, mini_dir):
    keys = mini_contest["challenge_keys"]
    assert set(keys.kind) == set(KINDS) and keys.groupby("kind").size().min() > 0
    tracks = mini_contest["tracks"]
    official = mpd_io.read_challenge_set(mini_dir / "challenge_set.json").seeds
    known = pd.Index(tracks.track_uri).get_indexer(official.track_uri)
    total = set(keys[keys.kind == "total"].key)
    assert set(known[known >= 0].tolist()) <= total  # official seeds are counted too


def test_tracks_come_from_statistics_parts_only(mini_contest, mini_size):
    n_stat = (mini_size.n_parts - 2) * mini_size.slices_per_part * mini_size.playlists_per_slice
    # every statistics playlist has >= 5 entries; held-out parts would add ~50% more
    total = mini_contest["tracks"]["count"].sum()
    assert 5 * n_stat <= total < 1.5 * 66 * n_stat


def test_part_keys_and_roles():
    keys = ["2000-2999", "0-999", "10000-10999", "1000-1999"]
    assert steps.part_keys(keys, 2) == {"0": ["0-999", "1000-1999"], "1": ["2000-2999", "10000-10999"]}
    roles = steps.PartRoles.of(8)
    assert roles.statistics == tuple("012345") and roles.training == "6" and roles.test == "7"
    assert steps.sample_shard_rows(np.array([5, 1, 3, 2]), 1, 2).tolist() == [0, 3]  # pids 2 and 5


def test_cooccurrence_step_selects_its_kind_from_multi_partition_keys(mini_size):
    from spotify_mpc import cooccurrence as co

    part = pd.DataFrame({"pid": [0, 0, 0], "pos": [0, 1, 2], "track_id": [0, 1, 2], "name": ["x"] * 3})
    tot = co.partial_counts(part, "total", np.array([0, 1, 2]), mini_size.cooc_shards)
    fwd = co.partial_counts(part, "forward", np.array([0, 1, 2]), mini_size.cooc_shards)
    loaders = {"0|total": lambda: tot, "total|1": lambda: tot, "0|forward": lambda: fwd}
    merged = pd.concat([steps.cooccurrence(loaders, s, mini_size, kind="total") for s in range(mini_size.cooc_shards)])
    counts = merged[merged.partner >= 0].set_index(["key", "partner"])["count"]
    assert counts.loc[(0, 1)] == 2 and len(counts) == 6  # both total parts, no forward rows

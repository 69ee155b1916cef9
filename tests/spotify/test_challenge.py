"""Sampling the 10 categories from held-out playlists; hidden answers and unseen tracks."""

import numpy as np
import pandas as pd
import pytest

from spotify_mpc.challenge import CATEGORIES, ChallengeView, min_length, sample_challenge_set


def _part(n_playlists=60, length=140, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_playlists):
        t = rng.integers(-3, 400, length)  # some unseen (negative) tracks and some repeats
        rows.append(pd.DataFrame({"pid": 100 + p, "pos": np.arange(length), "track_id": t,
                                  "artist_id": t // 10, "name": f"title {p}"}))
    return pd.concat(rows, ignore_index=True)


def test_categories_seeds_and_hidden():
    part = _part()
    cs = sample_challenge_set(part, per_category=3, seed=1)
    view = ChallengeView.from_frame(cs)
    assert len(view) == 30 and np.bincount(view.categories).tolist() == [3] * 10
    full = {pid: g.track_id.to_numpy() for pid, g in part.groupby("pid")}
    for i in range(len(view)):
        has_name, k, random_seeds = CATEGORIES[view.categories[i]]
        assert (view.names[i] is not None) == has_name
        seeds, hidden = view.seeds(i), view.hidden(i)
        assert len(seeds) == k
        pos = view.seed_pos[view.seed_ptr[i]:view.seed_ptr[i + 1]]
        assert np.array_equal(full[view.pids[i]][pos], seeds)
        if k:
            assert (not np.array_equal(pos, np.arange(k))) == random_seeds
        # hidden: the distinct non-seed tracks of the rest, unseen (negative) ones included
        expected = np.setdiff1d(np.unique(full[view.pids[i]]), seeds)
        assert np.array_equal(np.sort(hidden), expected) and len(hidden) >= 5
    assert (view.hidden_tracks < 0).any()  # unseen tracks are kept and counted


def test_long_categories_pick_first_and_shortage_is_explained():
    part = _part(n_playlists=12, length=20)  # too short for the 25/100-seed categories
    with pytest.raises(ValueError, match="title \\+ first 100.*needs 1 playlists of >= 125 tracks"):
        sample_challenge_set(part, per_category=1, seed=0)
    assert min_length(0) == 10 and min_length(5) == 10 and min_length(100) == 125


def test_view_subset_roundtrip():
    view = ChallengeView.from_frame(sample_challenge_set(_part(), per_category=2, seed=3))
    sub = view.subset(np.array([4, 1]))
    assert sub.pids.tolist() == [view.pids[4], view.pids[1]]
    assert np.array_equal(sub.seeds(0), view.seeds(4)) and np.array_equal(sub.hidden(1), view.hidden(1))


def test_contest_size_overrides_from_env(monkeypatch):
    from spotify_mpc.sizes import get_size

    monkeypatch.setenv("KTX_SLICES_PER_PART", "5")
    monkeypatch.setenv("KTX_CHALLENGE_PER_CATEGORY", "200")
    size = get_size("80k")
    assert (size.slices_per_part, size.n_parts, size.test_per_category, size.train_per_category) == (5, 16, 200, 200)
    monkeypatch.setenv("KTX_CHALLENGE_PER_CATEGORY", "lots")
    with pytest.raises(ValueError, match="KTX_CHALLENGE_PER_CATEGORY='lots' must be a whole number"):
        get_size("80k")

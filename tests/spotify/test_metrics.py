"""Metrics against hand-computed cases (see spotify_mpc/metrics.py for the exact variants)."""

import math

import numpy as np
import pytest

from spotify_mpc import metrics


def test_r_precision_tracks_only():
    # G = {1,2,3,4}; first |G|=4 recommendations hold 1 and 3 -> 2/4.
    hidden, hidden_art = np.array([1, 2, 3, 4]), np.array([-1, -1, -1, -1])
    rec = np.array([1, 9, 3, 8, 2])  # 2 is at rank 5, outside the first |G|
    assert metrics.r_precision(hidden, hidden_art, rec, np.full(5, 100)) == pytest.approx(0.5)


def test_r_precision_artist_credit_quarter():
    # G: tracks 1 (artist 10), 2 (artist 20). First 2 recs: track 1 (artist 10), track 7 (artist 20).
    # tracks matched = 1; artists matched = {10, 20} -> (1 + 0.25 * 2) / 2 = 0.75
    r = metrics.r_precision(np.array([1, 2]), np.array([10, 20]), np.array([1, 7, 2]), np.array([10, 20, 20]))
    assert r == pytest.approx(0.75)
    # artist only: (0 + 0.25 * 1) / 2
    r = metrics.r_precision(np.array([1, 2]), np.array([10, 20]), np.array([5, 6]), np.array([30, 10]))
    assert r == pytest.approx(0.125)


def test_r_precision_unseen_counts_in_denominator():
    # an unseen hidden track (negative id) can never match but still counts in |G|
    r = metrics.r_precision(np.array([1, -1, -2]), np.array([-1, -1, -1]), np.array([1, 2, 3]), np.array([0, 0, 0]))
    assert r == pytest.approx(1 / 3)


def test_ndcg_hand_computed():
    # G = {1, 2}; R = [3, 1, 2]: DCG = 1/log2(3) + 1/log2(4); IDCG = 1 + 1/log2(3)
    dcg = 1 / math.log2(3) + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3)
    assert metrics.ndcg(np.array([1, 2]), np.array([3, 1, 2])) == pytest.approx(dcg / idcg)


def test_ndcg_drops_repeats_and_truncates():
    # repeats are dropped keeping the first: [1, 1, 2] behaves like [1, 2] -> perfect
    assert metrics.ndcg(np.array([1, 2]), np.array([1, 1, 2])) == pytest.approx(1.0)
    # a hit beyond rank k does not count
    assert metrics.ndcg(np.array([7]), np.array([1, 2, 7]), k=2) == 0.0
    # IDCG uses min(|G|, k) relevant tracks
    g = np.arange(10)
    assert metrics.ndcg(g, np.arange(3), k=3) == pytest.approx(1.0)


def test_clicks():
    rec = np.arange(100, 600)
    assert metrics.clicks(np.array([100]), rec) == 0  # rank 1
    assert metrics.clicks(np.array([109]), rec) == 0  # rank 10
    assert metrics.clicks(np.array([110]), rec) == 1  # rank 11
    assert metrics.clicks(np.array([599, 350]), rec) == 25  # first relevant at rank 251
    assert metrics.clicks(np.array([1]), rec) == 51  # none in the 500


def test_empty_hidden_is_an_error():
    with pytest.raises(ValueError):
        metrics.ndcg(np.array([], dtype=int), np.arange(5))

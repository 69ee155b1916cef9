"""Per-category tables, Markdown and PNG for the model and the baseline."""

import numpy as np
import pandas as pd

from ktx_dagster import LazyPartitions
from spotify_mpc import steps
from spotify_mpc.challenge import ChallengeView
from spotify_mpc.cooccurrence import KINDS
from spotify_mpc.evaluation import evaluate
from spotify_mpc.submission import cooccurrence_scores
from spotify_mpc.submission import lists_frame as submission_lists_frame


def test_evaluate_two_methods():
    cs = pd.DataFrame({"pid": [1, 1, 1, 2, 2], "category": [0, 0, 0, 1, 1], "name": ["a"] * 3 + ["b"] * 2,
                       "num_tracks": [2, 2, 2, 2, 2], "is_seed": [False, False, False, True, False],
                       "pos": [0, 1, 2, 0, 1], "track_id": [3, 4, -1, 9, 0], "artist_id": [0, 1, 5, 2, 0]})
    view = ChallengeView.from_frame(cs)
    track_artist = np.arange(600) % 3
    perfect = np.array([[3, 4] + list(range(10, 508)), [0] + list(range(10, 509))])
    bad = np.array([list(range(10, 510)), list(range(10, 510))])
    res = evaluate(view, {"model": perfect, "popularity": bad}, track_artist)
    t = res.table.set_index(["method", "category"])
    # playlist 1: G = {3, 4, unseen}: 2 tracks + artists {0, 1} of 3/4 -> (2 + 0.5) / 3
    assert np.isclose(t.loc[("model", "title only"), "r_precision"], 2.5 / 3)
    assert t.loc[("model", "title + first 1"), "clicks"] == 0 and t.loc[("popularity", "overall"), "clicks"] == 51
    assert t.loc[("popularity", "overall"), "ndcg"] == 0
    assert "| overall | 2 | 16.7% |" in res.markdown and "model r_precision" in res.markdown
    assert np.isclose(t.loc[("model", "title only"), "unseen_share"], 1 / 3)
    assert res.png[:8] == b"\x89PNG\r\n\x1a\n"


def _samples(rows: list[tuple[int, int, dict[str, float]]]) -> pd.DataFrame:
    """pid, track_id and the six co-occurrence columns, log1p'ed as features.build_samples stores them."""
    frame = pd.DataFrame({"pid": [r[0] for r in rows], "track_id": np.array([r[1] for r in rows], np.int32)})
    for kind in KINDS:
        frame[kind] = np.log1p([r[2].get(kind, 0.0) for r in rows]).astype(np.float32)
    return frame


def test_cooccurrence_scores_sum_the_kinds():
    samples = _samples([(1, 10, {"total": 0.5}), (1, 11, {"total": 0.2, "forward": 0.2, "ngram_track": 0.2}),
                        (1, 12, {})])
    assert np.allclose(cooccurrence_scores(samples), [0.5, 0.6, 0.0], atol=1e-6)


def test_evaluation_ranks_test_candidates_by_cooccurrence_alone():
    # Playlist 7: seed 0, hidden 550 (one artist per track: no artist credit by accident).
    # Candidates: 552 has the most `total` co-occurrence, 550 the most summed over kinds (0.3 + 0.3),
    # 551 little, popular track 1 none. So the co-occurrence list starts 550, 552, 551, 1, ...
    cs = pd.DataFrame({"pid": [7, 7], "category": [1, 1], "name": ["x", "x"], "num_tracks": [2, 2],
                       "is_seed": [True, False], "pos": [0, 1], "track_id": [0, 550], "artist_id": [0, 550]})
    tracks = pd.DataFrame({"artist_id": np.arange(600)})
    samples = _samples([(7, 552, {"total": 0.5}), (7, 550, {"total": 0.3, "forward_10": 0.3}),
                        (7, 551, {"total": 0.05}), (7, 1, {})])
    requested = []

    def load(columns=None):  # like the IO manager: only the columns asked for
        requested.append(columns)
        return samples[columns] if columns else samples

    model_list = [t for t in range(1, 501) if t != 550][:14] + [550]  # the hit at rank 15
    model_list += [t for t in range(1, 600) if t not in model_list and t != 0][:500 - len(model_list)]
    sub = submission_lists_frame(np.array([7]), np.array([model_list]))
    res = steps.evaluation(sub, cs, tracks, LazyPartitions({"0": load}))
    t = res.table.set_index(["method", "category"])
    assert requested == [["pid", "track_id", *KINDS]]
    assert t.loc[("cooccurrence", "overall"), "r_precision"] == 1.25  # 550 first: the track and its artist
    assert t.loc[("cooccurrence", "overall"), "clicks"] == 0
    assert np.isclose(t.loc[("cooccurrence", "overall"), "ndcg"], 1.0)
    assert t.loc[("model", "overall"), "clicks"] == 1 and t.loc[("popularity", "overall"), "clicks"] == 51
    assert "cooccurrence r_precision" in res.markdown

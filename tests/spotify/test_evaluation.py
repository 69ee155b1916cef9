"""Per-category tables, Markdown and PNG for the model and the baseline."""

import numpy as np
import pandas as pd

from spotify_mpc.challenge import ChallengeView
from spotify_mpc.evaluation import evaluate


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

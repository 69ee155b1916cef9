"""Generic features, candidates and labels, checked on the generated mini contest."""

import numpy as np

from spotify_mpc import features
from spotify_mpc.challenge import ChallengeView


def test_generic_features(mini_contest):
    view = ChallengeView.from_frame(mini_contest["challenge_set"])
    stats = features.TrackStats.from_tracks(mini_contest["tracks"])
    g = features.generic_features(view, stats, mini_contest["artist_playlists"])
    assert list(g.pid) == list(view.pids)
    assert set(g[g.random_seeds == 1].category) == {7, 9}
    assert (g[g.category.isin([3, 5])].has_title == 0).all()
    assert g[~g.category.isin([3, 5])].has_title.mean() > 0.9  # emoji-only titles normalize to nothing
    assert np.allclose(np.expm1(g.n_seeds_log), view.n_seeds)
    assert ((g.target_artist >= 0) == (g.is_artist_playlist == 1)).all()
    assert g.is_artist_playlist.sum() > 0  # the generator titles some playlists after artists


def test_candidates_labels_and_features(mini_contest, mini_size):
    view = ChallengeView.from_frame(mini_contest["challenge_set"])
    samples = next(iter(mini_contest["test_samples"].values()))
    assert list(samples.columns) == ["pid", "track_id", *features.FEATURES, "label"]
    assert np.isfinite(samples[features.FEATURES].to_numpy()).all()
    by_pid = dict(iter(samples.groupby("pid")))
    k_pop = mini_size.candidates.popular
    for i in range(len(view)):
        if view.pids[i] not in by_pid:
            continue
        s = by_pid[view.pids[i]]
        cand = s.track_id.to_numpy()
        assert not np.isin(cand, view.seeds(i)).any()
        assert len(np.unique(cand)) == len(cand)
        assert np.isin(np.setdiff1d(np.arange(k_pop), view.seeds(i)), cand).all()  # popular ones
        assert np.array_equal(np.sort(cand[s.label.to_numpy() == 1]), np.sort(np.intersect1d(cand, view.hidden(i))))


def test_training_negatives_are_subsampled(mini_contest, mini_size):
    for samples in mini_contest["training_samples"].values():
        neg = samples[samples.label == 0].groupby("pid").size()
        assert neg.max() <= mini_size.negatives
        assert samples.label.sum() > 0


def test_scores_carry_signal(mini_contest):
    samples = next(iter(mini_contest["test_samples"].values()))
    pos, neg = samples[samples.label == 1], samples[samples.label == 0]
    for f in ("total", "forward_10", "ngram_track", "seed_artist_share"):
        assert pos[f].mean() > 2 * neg[f].mean(), f

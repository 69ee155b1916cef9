"""Top-500 lists, the popularity fill, CSV export and the verifier's rules."""

import json

import numpy as np
import pytest

from spotify_mpc import mpd_io, submission as sub

from .records import track


def _uris(n):
    return np.array([f"spotify:track:{i:022d}" for i in range(n)], dtype=object)


def test_rank_and_fill():
    rows = np.array([0, 0, 0, 1])
    tracks = np.array([7, 3, 9, 5])
    scores = np.array([0.1, 0.9, 0.5, 0.3])
    ranked = sub.rank_candidates(rows, tracks, scores, 3, k=2)
    assert [r.tolist() for r in ranked] == [[3, 9], [5], []]
    lists = sub.fill_popular(ranked, [np.array([0]), np.array([5, 1]), np.array([], dtype=int)], 20, k=5)
    # row 0: its two ranked tracks, then the most popular ones that are no seed (0 is one);
    # row 1: the seed 5 is dropped even though it was ranked, and seed 1 is never filled in;
    # row 2: nothing ranked, only popularity
    assert lists.tolist() == [[3, 9, 1, 2, 4], [0, 2, 3, 4, 6], [0, 1, 2, 3, 4]]
    for row in lists:
        assert len(set(row)) == 5


def _challenge(n_seeds=(0, 1)):  # "title only" and "title + first 1"
    pls = [{"name": "x", "num_holdouts": 10, "pid": 1000000 + i, "num_tracks": 10 + k,
            "tracks": [track(j, j) for j in range(k)], "num_samples": k} for i, k in enumerate(n_seeds)]
    return mpd_io.read_challenge_set(json.dumps({"date": "d", "version": "v1", "playlists": pls,
                                                 "name": "challenge_set"}).encode())


def test_csv_passes_verifier():
    cs = _challenge()
    lists = sub.popularity_lists([np.zeros(0, int), np.array([0, 1])], 600)
    text = sub.to_csv(np.array([1000000, 1000001]), lists, _uris(600), "team", "a@b.c")
    assert text.splitlines()[1] == "team_info,team,a@b.c"
    assert sub.verify(text, cs) == 2


@pytest.mark.parametrize("edit, line, rule", [
    (lambda ls: [ls[0], "team_info,team"] + ls[2:], 2, "team_info"),
    (lambda ls: ls[:2] + [ls[2].replace("1000000", "999")] + ls[3:], 3, "only challenge-set pids"),
    (lambda ls: ls[:3] + [ls[2]], 4, "every challenge pid exactly once"),
    (lambda ls: ls[:2] + [ls[2].rsplit(",", 1)[0]] + ls[3:], 3, "exactly 500 tracks"),
    (lambda ls: ls[:2] + [ls[2].replace(f"{499:022d}", f"{498:022d}")] + ls[3:], 3, "500 distinct tracks"),
    (lambda ls: ls[:3] + [ls[3].replace(f"{2:022d}", f"{0:022d}")], 4, "no seed track"),
    (lambda ls: ls[:2] + [ls[2].replace(f"spotify:track:{3:022d}", "spotify:track:short")] + ls[3:], 3, "URIs"),
    (lambda ls: ls[:3], None, "every challenge pid exactly once"),
])
def test_verifier_names_line_and_rule(edit, line, rule):
    cs = _challenge()
    lists = sub.popularity_lists([np.zeros(0, int), np.array([0, 1])], 600)
    lines = sub.to_csv(np.array([1000000, 1000001]), lists, _uris(600), "team", "a@b.c").splitlines()
    with pytest.raises(sub.SubmissionError) as err:
        sub.verify("\n".join(edit(lines)), cs)
    assert err.value.line == line and rule in str(err.value)
    if line:
        assert str(err.value).startswith(f"line {line}:")


def test_lists_frame_roundtrip():
    lists = np.arange(10).reshape(2, 5)
    df = sub.lists_frame(np.array([7, 3]), lists)
    assert sub.lists_from_frame(df, np.array([3, 7])).tolist() == [lists[1].tolist(), lists[0].tolist()]

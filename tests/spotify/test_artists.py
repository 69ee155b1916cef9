"""Artist playlists detected from the data: names that are titles about the artist, not phrases."""

import pandas as pd

from spotify_mpc.artists import detect_artist_playlists


def _tracks():
    # artist ids = popularity ranks; each artist has 5 tracks
    names = ["Drake", "Summer", "Love", "Zetaband", "Quiet Artist"]
    rows = [{"track_uri": f"t{a}_{i}", "artist_id": a, "artist_uri": f"a{a}", "artist_name": n,
             "artist_count": 100 - a, "count": 10} for a, n in enumerate(names) for i in range(5)]
    return pd.DataFrame(rows)


def _part(playlists):
    rows = []
    for pid, (title, artists) in enumerate(playlists):
        rows += [{"pid": pid, "pos": i, "track_id": 0, "artist_id": a, "name": title} for i, a in enumerate(artists)]
    return pd.DataFrame(rows)


def test_detection_uses_content_and_word_use():
    drake = [("Drake", [0, 0, 0, 1, 4])] * 3 + [("drake!!", [0, 0, 2, 0, 4])]
    summer = [("summer", [1, 2, 3, 4, 4, 4])] * 4  # the season, not the artist
    love_words = [(f"love {w}", [2, 4]) for w in ("songs", "me", "you", "life", "it", "story", "bug", "ly")]
    out = detect_artist_playlists(_tracks(), iter([_part(drake + summer[:2]), _part(summer[2:] + love_words)]),
                                  common_word_titles=8)
    names = set(out["name"])
    assert "drake" in names  # used as a title, and those playlists are mostly Drake
    assert "summer" not in names  # used as a title, but the artist's share is low
    assert "love" not in names  # never a whole title, but a frequent word in titles
    assert "zetaband" in names and "quiet artist" in names  # no evidence against: accepted
    row = out.set_index("name").loc["drake"]
    assert row.artist_id == 0 and row.n_playlists == 4 and 0.5 < row.artist_share < 0.7


def test_top_artists_limit():
    out = detect_artist_playlists(_tracks(), [], top_artists=2)
    # the two most popular artists, each accepted for lack of evidence against it (no titles)
    assert sorted(zip(out["artist_id"], out["name"])) == [(0, "drake"), (1, "summer")]

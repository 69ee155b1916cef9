"""Parts, the reduced track table (ids = popularity ranks) and renumbering with unseen tracks."""

import numpy as np
import pandas as pd

from spotify_mpc import mpd_io, standardize

from .records import dumps, playlist, slice_doc, track


def _slices():
    a = slice_doc(0, 999, [playlist(0, "A", [track(0, 1), track(1, 2, artist=1), track(2, 1)], modified_at=100),
                           playlist(1, "B", [track(0, 2, artist=1), track(1, 3, artist=2)], modified_at=200)])
    b = slice_doc(1000, 1999, [playlist(1000, "C", [track(0, 2, artist=1), track(1, 4, artist=1)], modified_at=400)])
    return [mpd_io.read_slice(dumps(a), "a"), mpd_io.read_slice(dumps(b), "b")]


def test_part_playlists_keep_order_and_repeats():
    df = standardize.part_playlists(reversed(_slices()))
    assert list(df.pid) == [0, 0, 0, 1, 1, 1000, 1000]
    assert list(df.pos) == [0, 1, 2, 0, 1, 0, 1]
    assert list(df.columns) == standardize.PLAYLIST_COLUMNS


def test_reduce_sums_counts_and_ranks_by_popularity():
    s1, s2 = _slices()
    t1, t2 = standardize.part_track_table([s1]), standardize.part_track_table([s2])
    tracks = standardize.reduce_track_tables(iter([t1, t2]))
    uri = lambda n: f"spotify:track:{n:022d}"  # noqa: E731
    # track 2: 2 entries in part 1 + 1 in part 2; track 1: 2 entries (a repeat counts twice)
    assert list(tracks.track_uri) == [uri(2), uri(1), uri(3), uri(4)]  # ties: by URI
    assert list(tracks["count"]) == [3, 2, 1, 1]
    # mean_modified_at weighted by counts: (100 + 200 + 400) / 3 for track 2
    assert tracks.loc[0, "mean_modified_at"] == np.float64(700 / 3)
    # artist 1 has 4 entries -> artist id 0; artist 0 (2 entries) -> 1; artist 2 -> 2
    assert list(tracks.artist_id) == [0, 1, 2, 0] and list(tracks.artist_count) == [4, 2, 1, 4]
    arts = standardize.artist_table(tracks)
    assert list(arts.index) == [0, 1, 2] and arts.loc[0, "artist_name"] == "Artist 1"


def test_renumber_unseen_tracks_get_distinct_negative_ids():
    s1, s2 = _slices()
    tracks = standardize.reduce_track_tables([standardize.part_track_table([s1])])
    part = standardize.part_playlists([s2])
    part = pd.concat([part, part.assign(pid=1001)], ignore_index=True)
    part.loc[3, "track_uri"] = "spotify:track:" + "9" * 22  # another unknown track
    out = standardize.renumber(part, tracks)
    # part 1 alone: tracks 1 and 2 both have 2 entries (tie -> URI order), track 2 = id 1
    assert out.track_id.tolist() == [1, -1, 1, -2]
    assert out.artist_id.tolist() == [1, 1, 1, 1]  # artist 1 is known although track 4 is not
    assert out.name.tolist() == ["C"] * 4

"""Reading hand-written records in the real MPD format, and clear errors for malformed ones."""

import json

import pytest

from spotify_mpc import mpd_io
from .records import dumps, playlist, slice_doc, track


def _slice():
    return slice_doc(0, 999, [
        # a repeated track (pos 0 and 2), no description
        playlist(0, "Throwbacks", [track(0, 1), track(1, 2, artist=1), track(2, 1)]),
        # empty description, unicode title, collaborative
        playlist(1, "chill 🌴 Vibes", [track(0, 3, artist=2, album=2), track(1, 4)],
                 description="", collaborative="true"),
        playlist(2, "", [track(0, 5)], description="songs for the gym"),
        playlist(3, None, [track(0, 6), track(1, 6)]),  # no title at all
    ])


def test_read_slice_real_format(tmp_path):
    path = tmp_path / "mpd.slice.0-999.json"
    path.write_bytes(dumps(_slice()))
    df = mpd_io.read_slice(path)
    assert len(df) == 8  # one row per entry, the repeats included
    p0 = df[df.pid == 0]
    assert list(p0.pos) == [0, 1, 2]
    assert list(p0.track_uri) == ["spotify:track:" + "1".zfill(22), "spotify:track:" + "2".zfill(22),
                                  "spotify:track:" + "1".zfill(22)]
    assert p0.description.isna().all()
    p1 = df[df.pid == 1]
    assert (p1.description == "").all() and p1.collaborative.all() and (p1.name == "chill 🌴 Vibes").all()
    assert not p0.collaborative.any()
    assert (df[df.pid == 2].description == "songs for the gym").all()
    assert df[df.pid == 3].name.isna().all() and list(df[df.pid == 3].pos) == [0, 1]
    assert p0.num_tracks.iloc[0] == 3 and p0.playlist_duration_ms.iloc[0] == 600_004
    # bytes give the same table
    assert mpd_io.read_slice(path.read_bytes(), "x").equals(df)


def test_read_challenge_set_categories():
    doc = {"date": "2018-01-16", "version": "v1", "name": "challenge_set", "playlists": [
        {"name": "party", "num_holdouts": 12, "pid": 1000000, "num_tracks": 12, "tracks": [], "num_samples": 0},
        {"num_holdouts": 20, "pid": 1000001, "num_tracks": 25,
         "tracks": [track(i, 10 + i) for i in range(5)], "num_samples": 5},
        {"name": "rock", "num_holdouts": 40, "pid": 1000002, "num_tracks": 65,
         "tracks": [track(p, 50 + p) for p in sorted({0, 3, 4, 7, 9, 11, 12, 13, 20, 21, 22, 23, 30, 31,
                                                        33, 35, 40, 41, 42, 44, 50, 51, 52, 60, 64})],
         "num_samples": 25},
    ]}
    cs = mpd_io.read_challenge_set(json.dumps(doc).encode(), "challenge_set.json")
    assert list(cs.playlists.category) == [0, 3, 7]  # title only, first 5 no title, title + 25 random
    assert cs.playlists.name.iloc[1] is None
    assert len(cs.seeds) == 30 and cs.seeds[cs.seeds.pid == 1000002].pos.max() == 64


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["playlists"][1].pop("pid"), "playlist #1: field 'pid' is missing"),
    (lambda d: d["playlists"][0]["tracks"][1].pop("track_uri"), "pid 0), track #1: field 'track_uri' is missing"),
    (lambda d: d["playlists"][0]["tracks"][2].update(pos="2"), "field 'pos' is '2'"),
    (lambda d: d["playlists"][1]["tracks"][0].update(track_uri="3"), "must look like spotify:track:"),
    (lambda d: d["playlists"][0].update(num_tracks=4), "num_tracks is 4 but 'tracks' has 3"),
    (lambda d: d["playlists"][0].update(collaborative="yes"), "'true' or 'false'"),
    (lambda d: d.pop("info"), "has no 'info' object"),
    (lambda d: d["info"].update(slice="1000-1999"), "pids span 0-3"),
    (lambda d: d["info"].update(slice=999), "info.slice: is 999. Fix: use the form '<first pid>-<last pid>'"),
    (lambda d: d.update(info={"slice": "0-1999"}), "file name: says pids 0-999 but info.slice says 0-1999 (pids 0-3). "
                                                   "Fix: rename the file to mpd.slice.0-1999.json"),
    (lambda d: d.pop("playlists"), "top level: has no 'playlists' array"),
    (lambda d: d["playlists"][1].update(pid=2**64), "playlist #1 (pid 18446744073709551616): field 'pid' is"),
    (lambda d: d["playlists"][1].update(pid=0), "playlists #0 and #1: both have pid 0. Fix: each playlist of a slice"),
    (lambda d: d["playlists"][2].update(tracks=[], num_tracks=0), "playlist #2 (pid 2): has no tracks"),
    (lambda d: d["playlists"][0]["tracks"][1].update(pos=40000), "field 'pos' is 40000. Fix: 'pos' must be an integer "
                                                                 "from 0 to 32767"),
    (lambda d: d["playlists"][0]["tracks"][1].update(track_name=["a"]), "track #1: field 'track_name' is ['a']"),
    (lambda d: d["playlists"][0]["tracks"][1].update(duration_ms=[1, 2]), "field 'duration_ms' is [1, 2]"),
    (lambda d: d["playlists"][0].update(name="\ud83c"), "\\ud83c is half of a UTF-16 pair. Fix: escape the whole"),
])
def test_malformed_slice_names_file_field_and_fix(mutate, expected):
    doc = _slice()
    mutate(doc)
    with pytest.raises(mpd_io.MpdFormatError) as err:
        mpd_io.read_slice(dumps(doc), "mpd.slice.0-999.json")
    msg = str(err.value)
    assert msg.startswith("mpd.slice.0-999.json: ") and expected in msg and "Fix:" in msg


def test_not_json_and_missing_file(tmp_path):
    with pytest.raises(mpd_io.MpdFormatError, match=r"^a\.json: line 1, column 2 \(character 1\): is not valid JSON"):
        mpd_io.read_slice(b"{nope", "a.json")
    with pytest.raises(mpd_io.MpdFormatError, match=r"^a\.json: line 2, column 10 \(character 20\): the JSON ends "
                                                    r"before it is complete .*: the file is truncated\. Fix: copy"):
        mpd_io.read_slice(b'{"info": {\n"slice": "0-9', "a.json")
    with pytest.raises(mpd_io.MpdFormatError, match=r"^a\.json: byte 14 \(line 2\): byte 0xe9 is not UTF-8\. Fix: "):
        mpd_io.read_slice(b'{"info": {},\n"\xe9t\xe9": 1}', "a.json")
    with pytest.raises(mpd_io.MpdFormatError, match="cannot be read"):
        mpd_io.read_slice(tmp_path / "missing.json")


def test_slice_range():
    assert mpd_io.slice_range("data/mpd.slice.1000-1999.json") == (1000, 1999)
    with pytest.raises(ValueError):
        mpd_io.slice_range("slice.json")

"""The synthetic MPD: exact formats, determinism per (seed, slice), real-like statistics."""

import json
import re

import numpy as np

from spotify_mpc import generate, mpd_io
from spotify_mpc.challenge import CATEGORIES

URI = re.compile(r"^spotify:(track|artist|album):[0-9A-Za-z]{22}$")
PLAYLIST_KEYS = {"name", "collaborative", "pid", "modified_at", "num_tracks", "num_albums", "num_followers",
                 "tracks", "num_edits", "duration_ms", "num_artists"}
TRACK_KEYS = {"pos", "artist_name", "track_uri", "artist_uri", "track_name", "album_uri", "duration_ms", "album_name"}


def test_slice_format(mini_dir, mini_size):
    names = sorted(p.name for p in mini_dir.glob("mpd.slice.*.json"))
    k = mini_size.playlists_per_slice
    assert names == sorted(f"mpd.slice.{i * k}-{i * k + k - 1}.json" for i in range(mini_size.slices))
    doc = json.loads((mini_dir / f"mpd.slice.{k}-{2 * k - 1}.json").read_text())
    assert doc["info"]["slice"] == f"{k}-{2 * k - 1}" and set(doc["info"]) == {"generated_on", "slice", "version"}
    pls = doc["playlists"]
    assert [p["pid"] for p in pls] == list(range(k, 2 * k))
    repeats = described = 0
    for p in pls:
        assert PLAYLIST_KEYS <= set(p) <= PLAYLIST_KEYS | {"description"}
        assert p["collaborative"] in ("true", "false")
        assert 5 <= p["num_tracks"] == len(p["tracks"]) <= 250
        assert [t["pos"] for t in p["tracks"]] == list(range(p["num_tracks"]))
        assert p["duration_ms"] == sum(t["duration_ms"] for t in p["tracks"])
        assert p["num_artists"] == len({t["artist_uri"] for t in p["tracks"]})
        assert p["num_albums"] == len({t["album_uri"] for t in p["tracks"]})
        for t in p["tracks"]:
            assert set(t) == TRACK_KEYS
            assert URI.match(t["track_uri"]) and URI.match(t["artist_uri"]) and URI.match(t["album_uri"])
        repeats += len(p["tracks"]) - len({t["track_uri"] for t in p["tracks"]})
        described += "description" in p
    assert repeats > 0 and described > 0  # repeated tracks and descriptions both occur


def test_same_track_same_metadata_across_slices(mini_dir):
    meta = {}
    for path in sorted(mini_dir.glob("mpd.slice.*.json"))[:3]:
        df = mpd_io.read_slice(path)
        for row in df.drop_duplicates("track_uri").itertuples():
            m = (row.track_name, row.artist_uri, row.artist_name, row.album_uri, row.duration_ms)
            assert meta.setdefault(row.track_uri, m) == m


def test_deterministic_per_seed_and_slice(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate.main(["--slices", "2", "--out", str(a), "--seed", "7", "--challenge-size", "20",
                   "--playlists-per-slice", "50", "--quiet"])
    # slice 1 alone, in a separate call: identical bytes (content depends on seed + index only)
    generate.build_catalogue.cache_clear()  # as if in a new process
    generate.main(["--slices", "1", "--first-slice", "1", "--out", str(b), "--seed", "7", "--challenge-size", "20",
                   "--playlists-per-slice", "50", "--quiet"])
    generate.main(["--slices", "1", "--first-slice", "1", "--out", str(c), "--seed", "8", "--challenge-size", "0",
                   "--playlists-per-slice", "50", "--quiet"])
    d = tmp_path / "d"  # one process instead of a pool: same bytes
    generate.main(["--slices", "2", "--out", str(d), "--seed", "7", "--challenge-size", "20",
                   "--playlists-per-slice", "50", "--quiet", "--jobs", "1"])
    name = "mpd.slice.50-99.json"
    assert (a / name).read_bytes() == (b / name).read_bytes() == (d / name).read_bytes()
    assert (a / "challenge_set.json").read_bytes() == (b / "challenge_set.json").read_bytes()
    assert (a / name).read_bytes() != (c / name).read_bytes()
    assert not (c / "challenge_set.json").exists()


def test_challenge_set_format(mini_dir, mini_size):
    doc = json.loads((mini_dir / "challenge_set.json").read_text())
    assert doc["name"] == "challenge_set" and {"date", "version", "playlists"} <= set(doc)
    pls = doc["playlists"]
    per = mini_size.official_challenge_size // 10
    assert len(pls) == 10 * per
    cs = mpd_io.read_challenge_set(mini_dir / "challenge_set.json")
    assert (cs.playlists.category.value_counts().sort_index() == per).all()
    for p, (has_name, k, random_seeds) in zip(pls[::per], CATEGORIES):
        assert ("name" in p) == has_name
        assert p["num_samples"] == len(p["tracks"]) == k
        assert p["num_samples"] + p["num_holdouts"] == p["num_tracks"] and p["num_holdouts"] >= 5
        pos = [t["pos"] for t in p["tracks"]]
        assert pos == sorted(pos)
        if k:
            assert (pos != list(range(k))) == random_seeds


def test_statistics_close_to_real():
    cat = generate.build_catalogue(0)
    stats = generate.statistics(cat, [generate.slice_playlists(cat, i) for i in range(10)])
    assert 60 < stats["mean_length"] < 72 and stats["min_length"] >= 5 and stats["max_length"] <= 250
    # 10k playlists of the real MPD hold ~660k entries; about 1% are repeats within a playlist
    assert 0.005 < 1 - stats["entries_dedup"] / stats["entries"] < 0.03
    # heavy tail: most distinct tracks are seen once or twice, a few are everywhere
    assert stats["tracks_seen_once"] > 0.4 and stats["top_track_playlist_share"] > 0.02
    assert stats["unique_artists"] < stats["unique_albums"] < stats["unique_tracks"]
    text = generate.format_statistics(stats)
    assert "unique_tracks" in text and "681,805" in text

def test_interrupted_generation_resumes(tmp_path, capsys):
    """A run killed part-way leaves whole files and `*.partial` ones; the same command again
    keeps the whole files (not rewritten), replaces the rest, and ends with the bytes and the
    statistics of an uninterrupted run."""
    args = ["--seed", "3", "--challenge-size", "20", "--playlists-per-slice", "50", "--jobs", "1"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    generate.main(["--slices", "3", "--out", str(whole), *args])
    full_stats = capsys.readouterr().out.rsplit("\nwrote", 1)[0]
    generate.main(["--slices", "1", "--out", str(cut), *args, "--challenge-size", "0", "--quiet"])
    kept = cut / "mpd.slice.0-49.json"
    kept_mtime = kept.stat().st_mtime_ns
    (cut / "mpd.slice.50-99.json.partial").write_text('{"info": {"slice": "50-99"}, "playl')  # killed mid-write
    capsys.readouterr()
    generate.main(["--slices", "3", "--out", str(cut), *args])
    out = capsys.readouterr().out
    assert "wrote 2 slices" in out and "(1 already there, kept)" in out
    assert out.rsplit("\nwrote", 1)[0] == full_stats  # statistics cover every slice, kept ones too
    assert kept.stat().st_mtime_ns == kept_mtime
    assert sorted(p.name for p in cut.iterdir()) == sorted(p.name for p in whole.iterdir())  # no .partial left
    for p in whole.iterdir():
        assert (cut / p.name).read_bytes() == p.read_bytes(), p.name

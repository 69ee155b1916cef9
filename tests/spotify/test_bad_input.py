"""Bad input files, materialized for real: real slice files in a temporary data dir, a real
Dagster instance, the chain's own assets and IO manager.

For each bad input: the step's error names the file, the field or position and the fix; only
the partition that reads it fails; nothing of it is stored (no output, no temporary file, no
materialization); the other partitions' outputs are byte for byte what they were; after the
fix, re-running just that partition succeeds.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ktx_dagster.data_dir import data_root
from ktx_dagster.io_manager import data_resources
from spotify_mpc import assets as spotify
from spotify_mpc import mpd_io, steps

from .records import dumps, playlist, slice_doc, track

ALL_ASSETS = [a for a in vars(spotify).values() if isinstance(a, dg.AssetsDefinition)]
FIRST, BAD, LAST = "0-999", "1000-1999", "2000-2999"


def _slice(first: int, n: int = 3, **extra) -> dict:
    """A valid slice of n playlists starting at pid `first` (range first..first+999)."""
    pls = [playlist(first + i, f"list {first + i}", [track(p, first + 10 * i + p, artist=i) for p in range(5)], **extra)
           for i in range(n)]
    return slice_doc(first, first + 999, pls)


class DataDir:
    """A temporary data dir holding real slice files, its instance and the chain's resources."""

    def __init__(self, root: Path, instance: dg.DagsterInstance):
        self.root, self.instance = root, instance
        self.raw = root / spotify.RAW_DIR
        self.raw.mkdir(parents=True, exist_ok=True)
        self.resources = data_resources(root)

    def write(self, key: str, content: bytes | dict) -> Path:
        path = self.raw / mpd_io.slice_file_name(key)
        path.write_bytes(content if isinstance(content, bytes) else dumps(content))
        return path

    def sync(self) -> None:
        spotify.PARTS.sync(self.instance, data_root(str(self.root)))

    def materialize(self, asset: dg.AssetsDefinition, key: str) -> dg.ExecuteInProcessResult:
        return dg.materialize(ALL_ASSETS, selection=[asset.key], partition_key=key, instance=self.instance,
                              resources=self.resources, raise_on_error=False)

    def outputs(self, asset: dg.AssetsDefinition) -> dict[str, bytes]:
        """Every file under the asset's output folder (temporary files included), by name."""
        folder = self.root / asset.key.to_user_string()
        return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.exists() else {}

    def materialized(self, asset: dg.AssetsDefinition) -> set[str]:
        return set(self.instance.get_materialized_partitions(asset.key))


def step_error(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    assert len(failures) == 1
    return failures[0].event_specific_data.error.to_string()


@pytest.fixture
def data(tmp_path):
    with dg.instance_for_test() as instance:
        yield DataDir(tmp_path / "data", instance)


def _assert_fails_alone_then_fixed(data: DataDir, asset, bad_key: str, fix, expected: tuple[str, ...]) -> None:
    """Materialize every partition of `asset`: only bad_key fails, with the expected message parts;
    nothing of it is stored; the others are untouched; fix() and re-running bad_key succeeds."""
    keys = data.instance.get_dynamic_partitions(spotify.PARTS.name if asset is spotify.playlists else spotify.SLICE_FILES.name)
    for key in keys:
        if key != bad_key:
            assert data.materialize(asset, key).success
    before = data.outputs(asset)
    error = step_error(data.materialize(asset, bad_key))
    for part in (*expected, "Fix:"):
        assert part in error, error
    assert data.outputs(asset) == before  # no output of it, no temporary file, the others unchanged
    assert data.materialized(asset) == set(keys) - {bad_key}
    fix()
    assert data.materialize(asset, bad_key).success
    after = data.outputs(asset)
    assert set(after) == set(before) | {f"{bad_key}.parquet"}
    assert {k: v for k, v in after.items() if k in before} == before
    assert data.materialized(asset) == set(keys)


def _truncated() -> bytes:
    text = dumps(_slice(1000))
    return text[: len(text) * 3 // 5]


def _non_utf8() -> bytes:
    return dumps(_slice(1000)).replace("list 1001".encode(), b"list \xe9t\xe9")  # Latin-1 'été'


def _without_playlists() -> dict:
    doc = _slice(1000)
    doc["playlist"] = doc.pop("playlists")  # a misspelt key
    return doc


def _wrong_types() -> dict:
    doc = _slice(1000)
    doc["playlists"][1]["tracks"][2]["duration_ms"] = "3:20"
    return doc


def _empty_playlist() -> dict:
    doc = _slice(1000)
    doc["playlists"][2].update(tracks=[], num_tracks=0)
    return doc


def _duplicate_pid() -> dict:
    doc = _slice(1000)
    doc["playlists"][2]["pid"] = 1001
    return doc


def _slice_of_other_pids() -> dict:
    return _slice(5000)  # the content of mpd.slice.5000-5999.json saved under the name 1000-1999


SLICE_CASES = [
    pytest.param(
        _truncated, ("mpd.slice.1000-1999.json", "line ", "column ", "truncated", "copy the whole file again"),
        id="truncated", marks=pytest.mark.reliability(
            "bad input", case="a truncated slice", injected="a real slice file cut after 60% of its bytes",
            seen="'<path>/mpd.slice.1000-1999.json: line L, column C (character N): the JSON ends before it is "
                 "complete ...: the file is truncated. Fix: copy the whole file again ...'",
            outcome="only that mpd_slices partition fails; nothing of it stored; the other slices' outputs "
                    "unchanged; re-running that partition after the fix succeeds")),
    pytest.param(
        _without_playlists, ("mpd.slice.1000-1999.json", "top level", "has no 'playlists' array"),
        id="no-playlists", marks=pytest.mark.reliability(
            "bad input", case="a slice without playlists", injected="a slice whose 'playlists' key is misspelt",
            seen="'<path>/mpd.slice.1000-1999.json: top level: has no 'playlists' array. Fix: an MPD file is an "
                 "object {\"info\" ...: ..., \"playlists\": [...]}'",
            outcome="only that mpd_slices partition fails; nothing of it stored; others unchanged; "
                    "re-run after the fix succeeds")),
    pytest.param(
        _wrong_types, ("mpd.slice.1000-1999.json", "playlist #1 (pid 1001), track #2", "field 'duration_ms' is '3:20'",
                       "must be an integer"),
        id="wrong-types", marks=pytest.mark.reliability(
            "bad input", case="wrong field types in a slice", injected="a track's duration_ms written as '3:20'",
            seen="'<path>/mpd.slice.1000-1999.json: playlist #1 (pid 1001), track #2: field 'duration_ms' is "
                 "'3:20'. Fix: 'duration_ms' must be an integer from 0 to ...'",
            outcome="only that mpd_slices partition fails; nothing of it stored; others unchanged; "
                    "re-run after the fix succeeds")),
    pytest.param(
        _empty_playlist, ("mpd.slice.1000-1999.json", "playlist #2 (pid 1002)", "has no tracks", "drop empty playlists"),
        id="no-tracks", marks=pytest.mark.reliability(
            "bad input", case="a playlist without tracks", injected="a playlist with 'tracks': [] and num_tracks 0",
            seen="'<path>/mpd.slice.1000-1999.json: playlist #2 (pid 1002): has no tracks. Fix: MPD slice "
                 "playlists have 5-250 tracks; drop empty playlists'",
            outcome="only that mpd_slices partition fails; nothing of it stored; others unchanged; "
                    "re-run after the fix succeeds")),
    pytest.param(
        _duplicate_pid, ("mpd.slice.1000-1999.json", "playlists #1 and #2", "both have pid 1001", "renumber"),
        id="duplicate-pid", marks=pytest.mark.reliability(
            "bad input", case="duplicate pids within a slice", injected="two playlists of one slice with pid 1001",
            seen="'<path>/mpd.slice.1000-1999.json: playlists #1 and #2: both have pid 1001. Fix: each playlist "
                 "of a slice has a pid of its own; drop or renumber the copy'",
            outcome="only that mpd_slices partition fails; nothing of it stored; others unchanged; "
                    "re-run after the fix succeeds")),
    pytest.param(
        _non_utf8, ("mpd.slice.1000-1999.json", "byte ", "(line ", "byte 0xe9 is not UTF-8", "re-encode it as UTF-8"),
        id="non-utf8", marks=pytest.mark.reliability(
            "bad input", case="non-UTF-8 bytes in a slice", injected="a title written in Latin-1 ('\\xe9t\\xe9')",
            seen="'<path>/mpd.slice.1000-1999.json: byte N (line L): byte 0xe9 is not UTF-8. Fix: MPD files are "
                 "UTF-8: copy the file again ..., or re-encode it as UTF-8 (e.g. iconv -f latin1 -t utf-8)'",
            outcome="only that mpd_slices partition fails; nothing of it stored; others unchanged; "
                    "re-run after the fix succeeds")),
    pytest.param(
        _slice_of_other_pids, ("mpd.slice.1000-1999.json", "file name", "says pids 1000-1999 but info.slice says "
                               "5000-5999", "rename the file to mpd.slice.5000-5999.json"),
        id="name-mismatch", marks=pytest.mark.reliability(
            "bad input", case="a slice whose file name does not match its pids",
            injected="slice 5000-5999 saved as mpd.slice.1000-1999.json",
            seen="'<path>/mpd.slice.1000-1999.json: file name: says pids 1000-1999 but info.slice says 5000-5999 "
                 "(pids 5000-5002). Fix: rename the file to mpd.slice.5000-5999.json, or put slice 1000-1999 in it'",
            outcome="only that mpd_slices partition fails; nothing of it stored; others unchanged; "
                    "re-run after the fix succeeds")),
]


@pytest.mark.parametrize("bad, expected", SLICE_CASES)
def test_a_bad_slice_fails_only_its_partition_and_rerun_after_fix_succeeds(data, bad, expected):
    data.write(FIRST, _slice(0))
    path = data.write(BAD, bad())
    data.write(LAST, _slice(2000))
    data.sync()
    _assert_fails_alone_then_fixed(data, spotify.mpd_slices, BAD, lambda: data.write(BAD, _slice(1000)),
                                   (str(path), *expected))
    assert pd.read_parquet(data.root / "mpd_slices" / f"{BAD}.parquet")["pid"].unique().tolist() == [1000, 1001, 1002]


def test_a_slice_broken_after_it_was_stored_keeps_its_stored_output(data):
    """A re-copy cut short: the failed re-run leaves the partition's earlier output as it was."""
    for key, first in ((FIRST, 0), (BAD, 1000)):
        data.write(key, _slice(first))
    data.sync()
    assert data.materialize(spotify.mpd_slices, BAD).success
    before = data.outputs(spotify.mpd_slices)
    data.write(BAD, _truncated())
    assert "truncated" in step_error(data.materialize(spotify.mpd_slices, BAD))
    assert data.outputs(spotify.mpd_slices) == before


@pytest.mark.reliability(
    "bad input", case="duplicate pids across slices",
    injected="pid 600 in mpd.slice.0-999.json and in mpd.slice.500-1499.json, two valid slices that fall in "
             "different parts",
    seen="both slices' mpd_slices steps fail: '<path>/mpd.slice.0-999.json and mpd.slice.500-1499.json: pid 600: is "
         "in both slices (1 pid(s) repeated). Fix: a pid belongs to exactly one slice: drop the repeated playlists "
         "from one file (or remove a copied slice), then re-run both slices' partitions'",
    outcome="only the two mpd_slices partitions holding the pid fail (a slice whose range overlaps without a "
            "shared pid passes), nothing of them stored; the others unchanged; re-running the two after the fix "
            "succeeds")
def test_duplicate_pids_across_slices_fail_both_slices_whatever_their_parts(data):
    assert spotify.PARTS.size == 2, "this test lays out parts of two slices (KTX_SPOTIFY_SIZE=mini)"
    first = _slice(0)
    first["playlists"][0]["pid"] = 600
    data.write("0-999", first)
    data.write("100-199", slice_doc(100, 199, _slice(100)["playlists"]))  # overlaps 0-999's range, no shared pid
    copy = slice_doc(500, 1499, [playlist(600, "again", [track(p, 700 + p) for p in range(5)])])
    data.write("500-1499", copy)
    data.write("2000-2999", _slice(2000))
    data.sync()
    parts = {"0": ["0-999", "100-199"], "1": ["500-1499", "2000-2999"]}  # the pid's slices in different parts
    assert steps.part_keys(data.instance.get_dynamic_partitions(spotify.SLICE_FILES.name), 2) == parts

    results = {key: data.materialize(spotify.mpd_slices, key) for key in ("100-199", "2000-2999", "0-999", "500-1499")}
    assert {key for key, result in results.items() if not result.success} == {"0-999", "500-1499"}
    for key, other in (("0-999", "500-1499"), ("500-1499", "0-999")):
        error = step_error(results[key])
        assert (f"{data.raw / mpd_io.slice_file_name(key)} and {mpd_io.slice_file_name(other)}: pid 600: is in both "
                "slices (1 pid(s) repeated). Fix: a pid belongs to exactly one slice") in error, error
    before = data.outputs(spotify.mpd_slices)
    assert set(before) == {"100-199.parquet", "2000-2999.parquet"}
    assert data.materialized(spotify.mpd_slices) == {"100-199", "2000-2999"}

    copy["playlists"][0]["pid"] = 601
    data.write("500-1499", copy)
    for key in ("0-999", "500-1499"):
        assert data.materialize(spotify.mpd_slices, key).success
    after = data.outputs(spotify.mpd_slices)
    assert {k: v for k, v in after.items() if k in before} == before
    assert data.materialized(spotify.mpd_slices) == {"0-999", "100-199", "500-1499", "2000-2999"}


def test_duplicate_pids_within_a_part_are_named_by_its_playlists_step():
    """Keys that are no MPD ranges escape the slices' overlap check; the part that joins them still sees it."""
    a = mpd_io.read_slice(dumps(_slice(0)), "a.json")
    b = mpd_io.read_slice(dumps(_slice(0, n=1)), "b.json")
    with pytest.raises(mpd_io.MpdFormatError, match=r"^mpd\.slice\.x\.json and mpd\.slice\.y\.json: pid 0: is in both "
                                                    r"slices \(1 pid\(s\) repeated\)\. Fix: .* re-run this part$"):
        steps.playlists({"x": lambda: a, "y": lambda: b})
    assert len(steps.playlists({"x": lambda: a})) == len(a)


def _challenge_doc(extra_playlist: dict | None = None) -> dict:
    pls = [{"name": "party", "num_holdouts": 12, "pid": 1000000, "num_tracks": 12, "tracks": [], "num_samples": 0},
           {"name": "rock", "num_holdouts": 10, "pid": 1000001, "num_tracks": 11, "tracks": [track(0, 1)],
            "num_samples": 1}]
    return {"date": "2018-01-16", "version": "v1", "name": "challenge_set", "playlists": pls + [extra_playlist or {
        "num_holdouts": 10, "pid": 1000002, "num_tracks": 15, "tracks": [track(p, p) for p in range(5)],
        "num_samples": 5}]}


@pytest.mark.reliability(
    "bad input", case="a challenge set with an unknown category",
    injected="challenge_set.json with a playlist of a title and 3 first seeds (no such category)",
    seen="challenge_keys fails: 'challenge_set.json: playlist #2 (pid 1000002): is in no challenge category: a title, "
         "3 first seed track(s). Fix: each playlist must be one of the 10 categories: title only (title, 0 first "
         "seeds); ...'",
    outcome="only challenge_keys fails (the one task that reads the file; its earlier output stays as it was); "
            "re-run after the fix succeeds and stores the same keys")
def test_a_challenge_set_with_an_unknown_category_fails_challenge_keys_only(data, mini_contest):
    # The inputs of challenge_keys as the chain stored them (from the mini contest run in memory).
    for name in ("challenge_set", "training_challenge_set", "tracks"):
        mini_contest[name].to_parquet(data.root / f"{name}.parquet")
    inputs = {p.name: p.read_bytes() for p in data.root.glob("*.parquet")}
    official = data.raw / spotify.CHALLENGE_FILE
    official.write_bytes(json.dumps(_challenge_doc()).encode())
    ok = dg.materialize(ALL_ASSETS, selection=[spotify.challenge_keys.key], instance=data.instance,
                        resources=data.resources, raise_on_error=False)
    assert ok.success
    stored = (data.root / "challenge_keys.parquet").read_bytes()
    bad = _challenge_doc({"name": "ballads", "num_holdouts": 20, "pid": 1000002, "num_tracks": 23,
                          "tracks": [track(p, p) for p in range(3)], "num_samples": 3})
    official.write_bytes(json.dumps(bad).encode())
    error = step_error(dg.materialize(ALL_ASSETS, selection=[spotify.challenge_keys.key], instance=data.instance,
                                      resources=data.resources, raise_on_error=False))
    for part in ("challenge_set.json", "playlist #2 (pid 1000002)", "is in no challenge category",
                 "a title, 3 first seed track(s)", "Fix: each playlist must be one of the 10 categories",
                 "title + first 5 (title, 5 first seeds)"):
        assert part in error, error
    assert (data.root / "challenge_keys.parquet").read_bytes() == stored  # the earlier output, whole
    assert sorted(p.name for p in data.root.iterdir() if p.is_file()) == sorted([*inputs, "challenge_keys.parquet"])
    official.write_bytes(json.dumps(_challenge_doc()).encode())
    assert dg.materialize(ALL_ASSETS, selection=[spotify.challenge_keys.key], instance=data.instance,
                          resources=data.resources, raise_on_error=False).success
    assert pd.read_parquet(data.root / "challenge_keys.parquet").equals(pd.read_parquet(io.BytesIO(stored)))

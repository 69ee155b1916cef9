"""Read MPD slice files and challenge sets (the real ones unchanged, or synthetic) into pandas.

A slice becomes one long table, one row per track entry (playlists always have 5-250 tracks
in the MPD, so no playlist is lost). A challenge set becomes two tables: playlists (some
have no seeds) and seed entries. Malformed input raises `MpdFormatError` naming the file, the
playlist, the field and how to fix it; the fast path stays vectorized and only a failure
walks the records one by one to find the culprit.
"""

from __future__ import annotations

import gc
import json
import re
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

Source = Union[bytes, bytearray, str, PathLike]

TRACK_FIELDS = ("pos", "track_uri", "artist_uri", "album_uri", "track_name", "artist_name",
                "album_name", "duration_ms")
_STR_TRACK_FIELDS = TRACK_FIELDS[1:7]
_URI_PREFIX = {"track_uri": "spotify:track:", "artist_uri": "spotify:artist:", "album_uri": "spotify:album:"}
SLICE_NAME = re.compile(r"^mpd\.slice\.(\d+)-(\d+)\.json$")
INT64 = (-2**63, 2**63)  # integers are stored as int64: larger ones are not MPD values
_POS_MAX = 2**15 - 1  # pos is stored as int16 (MPD playlists hold at most 250 tracks)
# An escaped UTF-16 surrogate ("\\ud83c"): valid JSON, but alone (without its other half) no
# Unicode text, so no Parquet file could store it.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")

# Playlist fields of a slice: (name, required, type). Types as in the MPD's documentation.
SLICE_PLAYLIST_FIELDS = (("pid", True, int), ("name", False, str), ("modified_at", True, int),
                         ("num_tracks", True, int), ("num_albums", False, int),
                         ("num_artists", False, int), ("num_followers", False, int),
                         ("num_edits", False, int), ("duration_ms", False, int),
                         ("collaborative", False, str), ("description", False, str))
CHALLENGE_PLAYLIST_FIELDS = (("pid", True, int), ("name", False, str), ("num_tracks", True, int),
                             ("num_samples", True, int), ("num_holdouts", True, int))


class MpdFormatError(ValueError):
    """Input that is not in the MPD format; the message says where and how to fix it."""

    def __init__(self, file: str, where: str, problem: str, fix: str):
        self.file, self.where, self.problem, self.fix = file, where, problem, fix
        super().__init__(f"{file}: {where}: {problem}. Fix: {fix}")


def _load(source: Source, name: str | None) -> tuple[Any, str]:
    if isinstance(source, (bytes, bytearray)):
        label = name or "<bytes>"
        raw = bytes(source)
    else:
        label = name or str(source)
        try:
            raw = Path(source).read_bytes()
        except OSError as exc:
            raise MpdFormatError(label, "file", f"cannot be read ({exc.strerror})",
                                 "pass an existing MPD JSON file or its bytes") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise MpdFormatError(label, f"byte {exc.start} (line {line})",
                             f"byte 0x{raw[exc.start]:02x} is not UTF-8",
                             "MPD files are UTF-8: copy the file again from the MPD archive, or re-encode it "
                             "as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from exc
    gc_was_enabled = gc.isenabled()
    gc.disable()  # json.loads makes millions of small objects; collections would rescan them all
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        at = f"line {exc.lineno}, column {exc.colno} (character {exc.pos})"
        if _cut_short(text[exc.pos:], exc.msg):
            raise MpdFormatError(label, at, f"the JSON ends before it is complete ({exc.msg}): the file is truncated",
                                 "copy the whole file again (a slice ends with '}' closing its top-level object)") from exc
        raise MpdFormatError(label, at, f"is not valid JSON: {exc.msg}",
                             "use the unmodified MPD file (UTF-8 JSON)") from exc
    except (ValueError, RecursionError) as exc:  # an integer of > 4300 digits, absurd nesting
        raise MpdFormatError(label, "whole file", f"cannot be parsed as JSON ({exc})",
                             "use the unmodified MPD file (UTF-8 JSON)") from exc
    finally:
        if gc_was_enabled:
            gc.enable()
    bad = _lone_surrogate(text)
    if bad is not None:
        line = text.count("\n", 0, bad) + 1
        raise MpdFormatError(label, f"line {line}, character {bad}", f"{text[bad:bad + 6]} is half of a UTF-16 pair",
                             "escape the whole character (both halves) or write it as UTF-8")
    return doc, label


_PARTIAL_LITERAL = re.compile(r"t(r(ue?)?)?|f(a(l(se?)?)?)?|n(u(ll?)?)?|-?[0-9]*(\.[0-9]*)?([eE][+-]?[0-9]*)?|\\(u[0-9a-fA-F]{0,3})?")


def _cut_short(rest: str, msg: str) -> bool:
    """Whether JSON that fails here simply stops early: nothing left, a string running to the
    end, or a partial last literal, number or escape."""
    return (not rest.strip() or msg.startswith("Unterminated string")
            or (msg.startswith("Invalid \\uXXXX escape") and '"' not in rest) or bool(_PARTIAL_LITERAL.fullmatch(rest)))


def _lone_surrogate(text: str) -> int | None:
    """Position of the first escaped surrogate without its other half, if any."""
    pending = None  # (start, end) of a high half waiting for its low half right after it
    for m in _SURROGATE_ESCAPE.finditer(text):
        start = before = m.start()
        while before and text[before - 1] == "\\":
            before -= 1
        if (start - before) % 2:  # "\\\\ud83c" is an escaped backslash, then plain text
            continue
        if text[start + 3] in "cdefCDEF":  # a low half: fine only right after a high one
            if pending is None or pending[1] != start:
                return pending[0] if pending else start
            pending = None
        else:
            if pending is not None:
                return pending[0]
            pending = (start, m.end())
    return pending[0] if pending else None


def _playlists_of(doc: Any, label: str) -> list[dict]:
    if not isinstance(doc, dict) or not isinstance(doc.get("playlists"), list):
        raise MpdFormatError(label, "top level", "has no 'playlists' array",
                             "an MPD file is an object {\"info\" or \"date\": ..., \"playlists\": [...]}")
    return doc["playlists"]


def _where(pl: dict, index: int) -> str:
    pid = pl.get("pid") if isinstance(pl, dict) else None
    return f"playlist #{index}" + (f" (pid {pid})" if pid is not None else "")


def _check_playlist_fields(pls: list[dict], label: str, fields) -> None:
    for i, pl in enumerate(pls):
        if not isinstance(pl, dict):
            raise MpdFormatError(label, f"playlist #{i}", "is not a JSON object", "each playlist is an object")
        for field, required, typ in fields:
            if field not in pl:
                if required:
                    raise MpdFormatError(label, _where(pl, i), f"field '{field}' is missing",
                                         f"add '{field}' ({typ.__name__}) to every playlist")
                continue
            value = pl[field]
            ok = isinstance(value, typ) and not (typ is int and (isinstance(value, bool)
                                                                 or not INT64[0] <= value < INT64[1]))
            if field == "collaborative":  # "true"/"false" in the MPD; tolerate real booleans
                ok = value in ("true", "false", True, False)
            if not ok:
                raise MpdFormatError(label, _where(pl, i), f"field '{field}' is {value!r}",
                                     f"'{field}' must be a {typ.__name__}"
                                     + (" ('true' or 'false')" if field == "collaborative" else ""))
        if not isinstance(pl.get("tracks"), list):
            raise MpdFormatError(label, _where(pl, i), "field 'tracks' is missing or not an array",
                                 "give every playlist a 'tracks' array (possibly empty in a challenge set)")


def _locate_track_error(pls: list[dict], label: str) -> None:
    """Slow path: find the first bad track entry and raise a precise error."""
    for i, pl in enumerate(pls):
        for j, t in enumerate(pl["tracks"]):
            where = f"{_where(pl, i)}, track #{j}"
            if not isinstance(t, dict):
                raise MpdFormatError(label, where, "is not a JSON object", "each track is an object")
            for field in TRACK_FIELDS:
                if field not in t:
                    raise MpdFormatError(label, where, f"field '{field}' is missing",
                                         f"every track needs {', '.join(TRACK_FIELDS)}")
                value = t[field]
                if field in ("pos", "duration_ms"):
                    top = _POS_MAX if field == "pos" else INT64[1] - 1
                    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
                        raise MpdFormatError(label, where, f"field '{field}' is {value!r}",
                                             f"'{field}' must be an integer from 0 to {top}")
                elif not isinstance(value, str):
                    raise MpdFormatError(label, where, f"field '{field}' is {value!r}", f"'{field}' must be a string")
                elif field in _URI_PREFIX and not value.startswith(_URI_PREFIX[field]):
                    raise MpdFormatError(label, where, f"field '{field}' is {value!r}",
                                         f"'{field}' must look like {_URI_PREFIX[field]}<22 base62 characters>")


def _track_columns(pls: list[dict], label: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Columns of all track entries, plus the number of entries of each playlist."""
    counts = np.fromiter((len(p["tracks"]) for p in pls), dtype=np.int64, count=len(pls))
    flat = [t for p in pls for t in p["tracks"]]
    try:
        cols = {f: [t[f] for t in flat] for f in TRACK_FIELDS}
        out: dict[str, np.ndarray] = {}
        for f in ("pos", "duration_ms"):
            arr = np.asarray(cols[f])
            if len(arr) and (arr.dtype.kind not in "iu" or arr.min() < 0 or (f == "pos" and arr.max() > _POS_MAX)):
                raise TypeError(f)
            out[f] = arr.astype(np.int64)
        strings: dict[str, pa.Array] = {}
        for f in _STR_TRACK_FIELDS:
            arr = np.fromiter(cols[f], dtype=object, count=len(cols[f]))  # 1-D even if a value is a list
            if len(arr) and pd.api.types.infer_dtype(arr, skipna=False) != "string":
                raise TypeError(f)
            # pandas' str columns are Arrow strings: built from the list directly, twice as fast
            # as pandas converting an object array, and the same column.
            strings[f] = pa.array(cols[f], type=pa.large_string())
            out[f] = pd.array(strings[f], dtype="str") if len(arr) else arr
        for f, prefix in _URI_PREFIX.items():
            if not pc.all(pc.starts_with(strings[f], prefix), min_count=0).as_py():  # no entries: nothing wrong
                raise TypeError(f)
    except (KeyError, TypeError, ValueError, OverflowError):  # a list, dict or huge int where a number belongs
        _locate_track_error(pls, label)
        raise  # pragma: no cover - the slow path always finds the culprit
    return out, counts


def read_slice(source: Source, name: str | None = None) -> pd.DataFrame:
    """One MPD slice -> one row per track entry, playlist fields repeated on each row.

    Columns: pid, name and description (None if absent), modified_at, collaborative (bool),
    num_tracks, num_albums, num_artists, num_followers, num_edits, playlist_duration_ms,
    pos, track_uri, artist_uri, album_uri, track_name, artist_name, album_name, duration_ms.
    Rows are in file order (playlist, then position). A repeated track stays repeated.
    """
    doc, label = _load(source, name)
    pls = _playlists_of(doc, label)
    _check_playlist_fields(pls, label, SLICE_PLAYLIST_FIELDS)
    cols, counts = _track_columns(pls, label)
    for i, pl in enumerate(pls):
        if counts[i] == 0:
            raise MpdFormatError(label, _where(pl, i), "has no tracks",
                                 "MPD slice playlists have 5-250 tracks; drop empty playlists")
        if pl["num_tracks"] != counts[i]:
            raise MpdFormatError(label, _where(pl, i),
                                 f"num_tracks is {pl['num_tracks']} but 'tracks' has {counts[i]} entries",
                                 "num_tracks must equal the length of 'tracks' in a slice file")
    pids = np.array([p["pid"] for p in pls], dtype=np.int64)
    _check_unique_pids(pids, label, "each playlist of a slice has a pid of its own; drop or renumber the copy")
    _check_info(doc, pids, label)

    def per_pl(field: str, default: Any = None) -> list:
        return [p.get(field, default) for p in pls]

    rep = lambda values, dtype=None: np.repeat(np.asarray(values, dtype=dtype), counts)  # noqa: E731
    df = pd.DataFrame({
        "pid": rep(pids),
        "name": rep(per_pl("name"), object),
        "description": rep(per_pl("description"), object),
        "modified_at": rep(per_pl("modified_at"), np.int64),
        "collaborative": rep([p.get("collaborative") in ("true", True) for p in pls], bool),
        "num_tracks": rep(per_pl("num_tracks"), np.int64),
        "num_albums": rep(per_pl("num_albums", -1), np.int64),
        "num_artists": rep(per_pl("num_artists", -1), np.int64),
        "num_followers": rep(per_pl("num_followers", -1), np.int64),
        "num_edits": rep(per_pl("num_edits", -1), np.int64),
        "playlist_duration_ms": rep(per_pl("duration_ms", -1), np.int64),
        "pos": cols["pos"].astype(np.int16),
        **{f: cols[f] for f in _STR_TRACK_FIELDS},
        "duration_ms": cols["duration_ms"],
    })
    return df


def _check_unique_pids(pids: np.ndarray, label: str, fix: str) -> None:
    if len(np.unique(pids)) != len(pids):
        dup = pids[np.flatnonzero(np.bincount(np.unique(pids, return_inverse=True)[1]) > 1)[0]]
        first, second = np.flatnonzero(pids == dup)[:2]
        raise MpdFormatError(label, f"playlists #{first} and #{second}", f"both have pid {dup}", fix)


def _check_info(doc: dict, pids: np.ndarray, label: str) -> None:
    info = doc.get("info")
    if info is None:
        raise MpdFormatError(label, "top level", "has no 'info' object",
                             "a slice file starts with \"info\": {\"slice\": \"<first>-<last>\", ...}")
    rng = info.get("slice") if isinstance(info, dict) else None
    m = re.fullmatch(r"(\d+)-(\d+)", rng if isinstance(rng, str) else "")
    if not m:
        raise MpdFormatError(label, "info.slice", f"is {rng!r}", "use the form '<first pid>-<last pid>', e.g. '0-999'")
    lo, hi = int(m.group(1)), int(m.group(2))
    if len(pids) and (pids.min() < lo or pids.max() > hi):
        raise MpdFormatError(label, "info.slice", f"says {rng} but pids span {pids.min()}-{pids.max()}",
                             "keep each slice's pids inside its declared range")
    named = SLICE_NAME.match(Path(label).name)
    if named and (int(named.group(1)), int(named.group(2))) != (lo, hi):
        raise MpdFormatError(label, "file name", f"says pids {named.group(1)}-{named.group(2)} but info.slice "
                             f"says {rng} (pids {pids.min() if len(pids) else '-'}-{pids.max() if len(pids) else '-'})",
                             f"rename the file to mpd.slice.{rng}.json, or put slice {named.group(1)}-{named.group(2)} in it")


def slice_file_name(key: str) -> str:
    """'0-999' -> 'mpd.slice.0-999.json', the MPD's name of the slice with that partition key."""
    return f"mpd.slice.{key}.json"


@dataclass(frozen=True)
class ChallengeSet:
    """A challenge set as read from JSON: playlists (one row each) and their seed entries."""

    playlists: pd.DataFrame  # pid, name (None if not given), num_tracks, num_samples, num_holdouts, category
    seeds: pd.DataFrame  # pid, pos, track_uri, artist_uri, album_uri, track_name, artist_name, album_name, duration_ms


def read_challenge_set(source: Source, name: str | None = None, *,
                       select: Callable[[np.ndarray], np.ndarray] | None = None) -> ChallengeSet:
    """The official `challenge_set.json` format (10 categories; seeds keep their original pos).

    select: given every pid (file order), the rows of the playlists to return; the whole file
    is still parsed and checked, but only those playlists' tables are built (a shard of the
    official set needs a twentieth of its seeds as string columns).
    """
    from spotify_mpc.challenge import CATEGORIES, CATEGORY_NAMES, category_of  # local: challenge imports pandas-heavy logic

    doc, label = _load(source, name)
    pls = _playlists_of(doc, label)
    _check_playlist_fields(pls, label, CHALLENGE_PLAYLIST_FIELDS)
    cols, counts = _track_columns(pls, label)
    for i, pl in enumerate(pls):
        if pl["num_samples"] != counts[i]:
            raise MpdFormatError(label, _where(pl, i),
                                 f"num_samples is {pl['num_samples']} but 'tracks' has {counts[i]} seeds",
                                 "num_samples must equal the number of given tracks")
        if pl["num_samples"] + pl["num_holdouts"] != pl["num_tracks"]:
            raise MpdFormatError(label, _where(pl, i), "num_samples + num_holdouts != num_tracks",
                                 "num_tracks is the full length: seeds plus hidden tracks")
    pids = np.array([p["pid"] for p in pls], dtype=np.int64)
    _check_unique_pids(pids, label, "challenge pids must be unique; drop the repeated playlist")
    starts = np.concatenate([[0], np.cumsum(counts)])
    pos = cols["pos"]
    contiguous = [bool(np.array_equal(pos[starts[i]:starts[i + 1]], np.arange(counts[i]))) for i in range(len(pls))]
    seed_pid = np.repeat(pids, counts)
    if select is not None:
        kept = np.isin(seed_pid, pids[select(pids)])
        cols = {f: c[kept] for f, c in cols.items()}
        seed_pid = seed_pid[kept]
    seeds = pd.DataFrame({"pid": seed_pid, "pos": cols["pos"].astype(np.int16),
                          **{f: cols[f] for f in _STR_TRACK_FIELDS}, "duration_ms": cols["duration_ms"]})
    playlists = pd.DataFrame({
        "pid": pids,
        "name": pd.Series([p.get("name") for p in pls], dtype=object),  # None = title not given
        "num_tracks": np.array([p["num_tracks"] for p in pls], dtype=np.int64),
        "num_samples": counts,
        "num_holdouts": np.array([p["num_holdouts"] for p in pls], dtype=np.int64),
    })
    playlists["category"] = [category_of(isinstance(n, str), int(k), not c)
                             for n, k, c in zip(playlists["name"], counts, contiguous)]
    unknown = np.flatnonzero(playlists["category"].to_numpy() < 0)
    if len(unknown):
        i = int(unknown[0])
        has_name, k, random = isinstance(playlists["name"][i], str), int(counts[i]), not contiguous[i]
        raise MpdFormatError(label, _where(pls[i], i),
                             f"is in no challenge category: {'a title' if has_name else 'no title'}, {k} "
                             f"{'random' if random else 'first'} seed track(s)",
                             "each playlist must be one of the 10 categories: "
                             + "; ".join(f"{name} ({'title, ' if t else 'no title, '}{n} {'random' if r else 'first'} seeds)"
                                         for name, (t, n, r) in zip(CATEGORY_NAMES, CATEGORIES)))
    if select is not None:
        playlists = playlists.iloc[np.sort(select(pids))].reset_index(drop=True)
    return ChallengeSet(playlists, seeds)


def pid_range(file_name: str) -> tuple[int, int] | None:
    """(first pid, last pid) a slice's file name claims, None if it is no MPD slice name."""
    m = SLICE_NAME.match(file_name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def slice_range(file_name: str) -> tuple[int, int]:
    """(first pid, last pid) from 'mpd.slice.<a>-<b>.json'; the key of an `mpd_slices` partition."""
    m = SLICE_NAME.match(Path(file_name).name)
    if not m:
        raise ValueError(f"{file_name!r} is not an MPD slice name; expected 'mpd.slice.<first>-<last>.json'")
    return int(m.group(1)), int(m.group(2))

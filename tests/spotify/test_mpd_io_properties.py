"""Property-based tests of the MPD slice reader (`mpd_io.read_slice`).

Valid slices, whatever their titles, descriptions and track lists hold, read back to the
records written; formatted differently (indentation, key order, escaped or raw Unicode), to
the same table. Any byte changed, inserted, deleted or cut off either still reads as a valid
slice (one Parquet can store) or raises `MpdFormatError` naming the file, the place and the
fix: never another exception, which would reach the user as a bare traceback.
"""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from spotify_mpc import mpd_io

from .records import playlist, slice_doc, track

NAME = "mpd.slice.1000-1999.json"
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)  # any Unicode but lone surrogates


@st.composite
def slices(draw) -> dict:
    pids = draw(st.lists(st.integers(1000, 1999), min_size=1, max_size=4, unique=True))
    pls = []
    for pid in pids:
        n = draw(st.integers(1, 6))
        tracks = [track(pos, draw(st.integers(0, 50)), artist=draw(st.integers(0, 5)), album=draw(st.integers(0, 5)),
                        track_name=draw(texts), artist_name=draw(texts), album_name=draw(texts)) for pos in range(n)]
        extra = {"description": draw(texts)} if draw(st.booleans()) else {}
        pls.append(playlist(pid, draw(st.one_of(st.none(), texts)), tracks,
                            collaborative=draw(st.sampled_from(["true", "false"])), **extra))
    return slice_doc(1000, 1999, pls)


def _expected_rows(doc: dict) -> list[tuple]:
    return [(pl["pid"], pl.get("name"), pl.get("description"), pl["collaborative"] == "true", t["pos"], t["track_uri"],
             t["artist_uri"], t["album_uri"], t["track_name"], t["artist_name"], t["album_name"], t["duration_ms"])
            for pl in doc["playlists"] for t in pl["tracks"]]


def _rows(frame: pd.DataFrame) -> list[tuple]:
    cols = ["pid", "name", "description", "collaborative", "pos", "track_uri", "artist_uri", "album_uri",
            "track_name", "artist_name", "album_name", "duration_ms"]
    return [tuple(None if isinstance(v, float) and pd.isna(v) else v for v in row)
            for row in frame[cols].astype(object).itertuples(index=False)]


@settings(max_examples=60, deadline=None)
@given(doc=slices(), indent=st.sampled_from([None, 0, 1, 4, "\t"]), ascii_only=st.booleans(),
       sort_keys=st.booleans())
def test_valid_slices_round_trip_whatever_their_formatting(doc, indent, ascii_only, sort_keys):
    raw = json.dumps(doc, indent=indent, ensure_ascii=ascii_only, sort_keys=sort_keys).encode()
    frame = mpd_io.read_slice(raw, NAME)
    assert _rows(frame) == _expected_rows(doc)
    reference = mpd_io.read_slice(json.dumps(doc).encode(), NAME)
    pd.testing.assert_frame_equal(frame, reference)


def _storable(frame: pd.DataFrame) -> None:
    frame.to_parquet(io.BytesIO())  # what the IO manager will do with it


def _read_or_clear_error(raw: bytes) -> pd.DataFrame | None:
    try:
        frame = mpd_io.read_slice(raw, NAME)
    except mpd_io.MpdFormatError as exc:
        message = str(exc)
        assert message.startswith(f"{NAME}: ") and ". Fix: " in message, message
        assert exc.where and exc.problem and exc.fix
        return None
    _storable(frame)
    assert frame["num_tracks"].groupby(frame["pid"]).first().sum() == len(frame)
    assert frame["pid"].between(1000, 1999).all()
    return frame


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=slices(), data=st.data())
def test_any_byte_mutation_reads_as_a_valid_slice_or_raises_the_clear_error(doc, data):
    raw = bytearray(json.dumps(doc, indent=data.draw(st.sampled_from([None, 2])),
                               ensure_ascii=data.draw(st.booleans())).encode())
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw) - 1))
        kind = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = data.draw(st.one_of(st.integers(0, 255), st.sampled_from(list(b'{}[]",:\\0123456789e-. \xff\xc3'))))
        if kind == "replace":
            raw[at] = byte
        elif kind == "insert":
            raw.insert(at, byte)
        else:
            del raw[at]
    _read_or_clear_error(bytes(raw))


@settings(max_examples=80, deadline=None)
@given(doc=slices(), data=st.data())
def test_a_truncated_slice_raises_the_clear_error_naming_the_position(doc, data):
    raw = json.dumps(doc, indent=data.draw(st.sampled_from([None, 4]))).encode()
    cut = data.draw(st.integers(0, len(raw.rstrip()) - 1))
    with pytest.raises(mpd_io.MpdFormatError) as err:
        mpd_io.read_slice(raw[:cut], NAME)
    assert str(err.value).startswith(f"{NAME}: line ") and "the file is truncated" in err.value.problem


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
              st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.characters(), max_size=6)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


def _nodes(value, path=()):
    """Every (container, key) of a JSON document, depth first."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield value, key
        yield from _nodes(child, (*path, key))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=slices(), data=st.data())
def test_any_value_replaced_or_removed_reads_as_a_valid_slice_or_raises_the_clear_error(doc, data):
    for _ in range(data.draw(st.integers(1, 2))):
        nodes = list(_nodes(doc))
        container, key = nodes[data.draw(st.integers(0, len(nodes) - 1))]
        if isinstance(container, dict) and data.draw(st.booleans()):
            del container[key]
        else:
            container[key] = data.draw(json_values)
    _read_or_clear_error(json.dumps(doc, ensure_ascii=data.draw(st.booleans())).encode("utf-8", "surrogatepass"))

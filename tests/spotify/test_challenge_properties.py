"""Property-based tests of the challenge set reader (`mpd_io.read_challenge_set`).

A challenge set whose playlists are in the 10 official categories reads back with each
playlist's category and seeds; a playlist in no category (a title or not, any number of
first or random seeds) raises `MpdFormatError` naming the playlist and listing the
categories; any value replaced or removed reads as a valid set or raises that clear error.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from spotify_mpc import mpd_io
from spotify_mpc.challenge import CATEGORIES

from .records import track
from .test_mpd_io_properties import _nodes, json_values

NAME = "challenge_set.json"


def _playlist(pid: int, has_name: bool, positions: list[int], holdouts: int) -> dict:
    pl = {"pid": pid, "num_tracks": len(positions) + holdouts, "num_samples": len(positions),
          "num_holdouts": holdouts, "tracks": [track(p, 1000 + p) for p in positions]}
    if has_name:
        pl["name"] = f"list {pid}"
    return pl


@st.composite
def seed_positions(draw, k: int, random: bool, num_tracks: int) -> list[int]:
    if not random:
        return list(range(k))
    positions = sorted(draw(st.sets(st.integers(0, num_tracks - 1), min_size=k, max_size=k)))
    if positions == list(range(k)):  # random seeds that happen to be the first k: not this category
        positions[-1] = num_tracks - 1
    return positions


@st.composite
def challenge_sets(draw) -> tuple[dict, list[int]]:
    categories = draw(st.lists(st.integers(0, len(CATEGORIES) - 1), min_size=1, max_size=5))
    pls = []
    for i, category in enumerate(categories):
        has_name, k, random = CATEGORIES[category]
        holdouts = draw(st.integers(1, 30))
        pls.append(_playlist(1_000_000 + i, has_name, draw(seed_positions(k, random, k + holdouts)), holdouts))
    return {"date": "2018-01-16", "version": "v1", "name": "challenge_set", "playlists": pls}, categories


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(challenge_sets())
def test_valid_challenge_sets_read_back_with_their_categories_and_seeds(doc_and_categories):
    doc, categories = doc_and_categories
    cs = mpd_io.read_challenge_set(json.dumps(doc).encode(), NAME)
    assert cs.playlists["category"].tolist() == categories
    assert cs.playlists["pid"].tolist() == [pl["pid"] for pl in doc["playlists"]]
    assert cs.seeds["pos"].tolist() == [t["pos"] for pl in doc["playlists"] for t in pl["tracks"]]
    assert cs.playlists["name"].tolist() == [pl.get("name") for pl in doc["playlists"]]


@settings(max_examples=100, deadline=None)
@given(has_name=st.booleans(), k=st.integers(0, 120), random=st.booleans(), holdouts=st.integers(1, 10), data=st.data())
@example(has_name=True, k=3, random=False, holdouts=5, data=None)
@example(has_name=False, k=0, random=False, holdouts=5, data=None)
def test_a_playlist_in_no_category_raises_naming_it_and_the_categories(has_name, k, random, holdouts, data):
    random = random and k > 0 and holdouts > 0
    positions = data.draw(seed_positions(k, random, k + holdouts)) if data else list(range(k))
    pl = _playlist(1_000_007, has_name, positions, holdouts)
    doc = {"date": "2018-01-16", "version": "v1", "playlists": [_playlist(1_000_000, True, [], 12), pl]}
    if (has_name, k, random) in CATEGORIES:
        assert mpd_io.read_challenge_set(json.dumps(doc).encode(), NAME).playlists["category"].tolist()[1] == \
            CATEGORIES.index((has_name, k, random))
        return
    with pytest.raises(mpd_io.MpdFormatError) as err:
        mpd_io.read_challenge_set(json.dumps(doc).encode(), NAME)
    assert str(err.value).startswith(f"{NAME}: playlist #1 (pid 1000007): is in no challenge category: ")
    assert f"{'a title' if has_name else 'no title'}, {k} {'random' if random else 'first'} seed track(s)" in str(err.value)
    assert "Fix: each playlist must be one of the 10 categories: title only (title, 0 first seeds); " in str(err.value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc_and_categories=challenge_sets(), data=st.data())
def test_any_value_replaced_or_removed_reads_as_a_valid_set_or_raises_the_clear_error(doc_and_categories, data):
    doc, _ = doc_and_categories
    for _ in range(data.draw(st.integers(1, 2))):
        nodes = list(_nodes(doc))
        container, key = nodes[data.draw(st.integers(0, len(nodes) - 1))]
        if isinstance(container, dict) and data.draw(st.booleans()):
            del container[key]
        else:
            container[key] = data.draw(json_values)
    raw = json.dumps(doc, ensure_ascii=data.draw(st.booleans())).encode("utf-8", "surrogatepass")
    try:
        cs = mpd_io.read_challenge_set(raw, NAME)
    except mpd_io.MpdFormatError as exc:
        assert str(exc).startswith(f"{NAME}: ") and ". Fix: " in str(exc)
    else:
        assert (cs.playlists["category"] >= 0).all()
        assert cs.playlists["num_samples"].sum() == len(cs.seeds)

"""Property-based tests of partition keys from file names (`FilePartitions`), on real files.

Whatever a file is called: a name matching the pattern gives a key that names that file back
(path_for) and that Dagster can store, or an error naming the file and the fix; keys come out
in natural order (numbers by value) whatever they hold.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given, settings, strategies as st
from upath import UPath

from ktx_dagster import FilePartitions
from ktx_dagster.partitions import natural_key, natural_sorted

SLICES = FilePartitions("slices", "raw", "mpd.slice.*.json", key="match")
PARTS = FilePartitions("parts", "in", "part_*.txt")  # key="stem": part_1.txt -> part_1
INVALID = re.compile(r"[\x00-\x1f,\[\]|]")  # what Dagster keys cannot hold

# What a file name can hold on this file system (no '/', no NUL), short enough for any.
middles = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), max_size=40)


def _discover(source: FilePartitions, names: list[str]) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / source.directory
        folder.mkdir()
        for name in names:
            (folder / name).write_text("x")
        return source.discover(UPath(tmp))


@settings(max_examples=150, deadline=None)
@given(middle=middles, source=st.sampled_from([SLICES, PARTS]))
@example(middle="0-999", source=SLICES)
@example(middle="", source=SLICES)
@example(middle="a,b", source=PARTS)
@example(middle="²", source=PARTS)
def test_a_file_gives_a_key_that_names_it_back_or_an_error_naming_the_file(middle, source):
    prefix, suffix = source.pattern.split("*")
    name = prefix + middle + suffix
    try:
        keys = _discover(source, [name])
    except ValueError as exc:
        assert name in str(exc) and "rename the file" in str(exc)
        key = source.key_for(name)
        assert not key or INVALID.search(key)
    else:
        assert len(keys) == 1
        key = keys[0]
        assert key == (middle if source.key == "match" else prefix + middle)
        assert key and not INVALID.search(key)
        assert source.path_for(UPath("/data"), key) == UPath("/data") / source.directory / name


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 10**7), min_size=1, max_size=12, unique=True))
def test_slice_keys_come_out_in_pid_order(firsts):
    names = [f"mpd.slice.{a}-{a + 999}.json" for a in firsts] + ["challenge_set.json", "mpd.slice.0-9.json.tmp"]
    assert _discover(SLICES, names) == [f"{a}-{a + 999}" for a in sorted(firsts)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=8), max_size=8))
@example(["²", "a"])
@example(["1", "a", "1a", "a1", ""])
def test_natural_sort_orders_any_keys(keys):
    ordered = natural_sorted(keys)  # never a TypeError comparing a number with text
    assert sorted(ordered) == sorted(keys)
    assert [natural_key(k) for k in ordered] == sorted(natural_key(k) for k in keys)


@given(st.integers(0, 10**9), st.integers(0, 10**9))
def test_numbers_sort_by_value(a, b):
    assert (natural_key(f"part_{a}") < natural_key(f"part_{b}")) == (a < b)


def test_the_error_of_an_invalid_name_says_which_character():
    with pytest.raises(ValueError, match=r"mpd\.slice\.0\|9\.json: the partition key '0\|9'.*'\|'.*rename the file"):
        _discover(SLICES, ["mpd.slice.0|9.json"])

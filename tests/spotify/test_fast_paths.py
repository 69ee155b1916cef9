"""The vectorized co-occurrence counting and reduction equal a plain-Python reference on small
random parts (every kind, several shard counts, unknown tracks, empty vocabularies), and the
sort-based `unique` equals np.unique."""

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from spotify_mpc import cooccurrence as co
from spotify_mpc.arrays import unique
from spotify_mpc.text import title_ngram_pairs

TITLES = ["Rock", "rock!", "jazz", "chill vibes", None, "Rock on"]


def random_part(rng: np.random.Generator, n_playlists: int = 12, n_tracks: int = 15) -> pd.DataFrame:
    rows = []
    for pid in rng.permutation(np.arange(100, 100 + n_playlists)):  # not in pid order
        length = int(rng.integers(1, 14))
        tracks = rng.integers(-3, n_tracks, length)  # negative: a track unknown to the statistics
        name = TITLES[int(rng.integers(len(TITLES)))]
        rows += [(int(pid), pos, int(t), name) for pos, t in enumerate(tracks)]
    df = pd.DataFrame(rows, columns=["pid", "pos", "track_id", "name"])
    return df.sample(frac=1.0, random_state=int(rng.integers(1 << 30))).reset_index(drop=True)


def playlists_of(part: pd.DataFrame) -> list[tuple[list[int], object]]:
    part = part.sort_values(["pid", "pos"])
    return [(g["track_id"].tolist(), g["name"].iloc[0]) for _, g in part.groupby("pid", sort=True)]


def position_key(tracks: list[int], i: int, kind: str) -> int | None:
    if kind in ("forward", "forward_10"):
        return tracks[i]
    width = 2 if kind == "forward_10_pair" else 3
    if i < width - 1:
        return None
    cols = [np.array([tracks[i - (width - 1 - j)]]) for j in range(width)]
    return int((co.pair_codes if width == 2 else co.triple_codes)(*cols)[0])


def reference_counts(part: pd.DataFrame, kind: str) -> tuple[Counter, Counter]:
    """(key, partner) -> count and key -> key count, straight from the module's definitions."""
    pairs, key_counts = Counter(), Counter()
    for tracks, name in playlists_of(part):
        if kind in ("total", "ngram_track"):
            keys = set(tracks) if kind == "total" else set(title_ngram_pairs([name])[1].tolist())
            partners = {t for t in tracks if t >= 0}
            for k in keys:
                key_counts[k] += 1
                for t in partners:
                    if kind == "ngram_track" or t != k:
                        pairs[(k, t)] += 1
            continue
        window = 1 if kind == "forward" else co.WINDOW
        for i in range(len(tracks)):
            k = position_key(tracks, i, kind)
            if k is None or k < 0:
                continue
            if i + 1 < len(tracks):
                key_counts[k] += 1
            for j in range(i + 1, min(i + window, len(tracks) - 1) + 1):
                if tracks[j] != tracks[i] and tracks[j] >= 0:
                    pairs[(k, tracks[j])] += 1
    return pairs, key_counts


def vocabulary(rng: np.random.Generator, part: pd.DataFrame, kind: str) -> np.ndarray:
    """Some keys that occur in the part, some that do not; sometimes none at all."""
    pairs, key_counts = reference_counts(part, kind)
    known = np.array(sorted(k for k in key_counts if k >= 0), dtype=np.int64)
    if rng.random() < 0.1 or not len(known):
        return np.zeros(0, np.int64)
    chosen = rng.choice(known, size=int(rng.integers(1, len(known) + 1)), replace=False)
    extra = np.array([10_000, 2**40 + 7], dtype=np.int64)[: int(rng.integers(0, 3))]
    return np.unique(np.concatenate([chosen, extra]))


@pytest.mark.parametrize("kind", co.KINDS)
def test_partial_counts_equal_the_reference_on_random_parts(kind):
    rng = np.random.default_rng(co.KINDS.index(kind))
    for _ in range(25):
        part = random_part(rng)
        vocab = vocabulary(rng, part, kind)
        n_shards = int(rng.integers(1, 6))
        df = co.partial_counts(part, kind, vocab, n_shards)
        pairs, key_counts = reference_counts(part, kind)
        in_vocab = set(vocab.tolist())
        got_pairs = {(k, p): c for k, p, c in zip(df.key, df.partner, df["count"]) if p >= 0}
        got_counts = {k: c for k, p, c in zip(df.key, df.partner, df["count"]) if p < 0}
        assert got_pairs == {kp: c for kp, c in pairs.items() if kp[0] in in_vocab}
        assert got_counts == {k: key_counts.get(k, 0) for k in in_vocab}
        assert (np.diff(df["shard"].to_numpy()) >= 0).all()  # grouped by shard
        assert (df["shard"] == co.shard_of(df["key"].to_numpy(), n_shards)).all()


def test_reduce_shard_equals_summing_and_ranking_in_python():
    rng = np.random.default_rng(7)
    for _ in range(20):
        parts = [random_part(rng, n_playlists=10) for _ in range(int(rng.integers(1, 4)))]
        vocab = vocabulary(rng, pd.concat(parts), "total")
        n_shards, top_n = int(rng.integers(1, 4)), int(rng.integers(1, 6))
        partials = [co.partial_counts(p, "total", vocab, n_shards) for p in parts] + [co.empty_partial()]
        for shard in range(n_shards):
            out = co.reduce_shard(iter(partials), shard, top_n)
            summed, key_counts = Counter(), Counter()
            for p in partials:
                rows = p[p["shard"] == shard]
                for k, q, c in zip(rows.key, rows.partner, rows["count"]):
                    (key_counts if q < 0 else summed)[(k,) if q < 0 else (k, q)] += c
            expected = set()
            for (k,), c in key_counts.items():
                partners = sorted(((-n, q) for (kk, q), n in summed.items() if kk == k))[:top_n]
                expected |= {(k, -1, c)} | {(k, q, -n) for n, q in partners}
            assert set(zip(out.key, out.partner, out["count"])) == expected
            keys = out["key"].to_numpy()
            assert (np.diff(keys) >= 0).all()
            first_of_key = np.r_[True, keys[1:] != keys[:-1]] if len(keys) else np.zeros(0, bool)
            assert (out["partner"].to_numpy()[first_of_key] == -1).all()  # each key's count row first


def test_unique_equals_numpy_unique():
    rng = np.random.default_rng(3)
    for dtype in (np.int64, np.int32, np.int8, bool):
        for n in (0, 1, 2, 50, 5000):
            a = rng.integers(-20, 20, n).astype(dtype)
            got, want = unique(a), np.unique(a)
            assert got.dtype == want.dtype and np.array_equal(got, want)
    with pytest.raises(TypeError, match="integer"):
        unique(np.array([1.0, np.nan]))


def test_a_code_beyond_an_int32_key_column_is_unknown_not_wrapped():
    # Track keys are stored as int32; 2**32 + 1 would wrap to 1 if searched as int32.
    part = pd.DataFrame({"pid": [0, 0, 1, 1], "pos": [0, 1, 0, 1], "track_id": [1, 2, 1, 3], "name": ["a"] * 4})
    table = co.reduce_shard([co.partial_counts(part, "total", np.array([1], np.int64), 1)], 0)
    assert table["key"].dtype == np.int32
    lookup = co.CoocLookup({("total", 0): table}, 1)
    m, key_counts = lookup.rows("total", np.array([1, 2**32 + 1]), 4)
    assert key_counts.tolist() == [2, 0] and m[1].nnz == 0 and m[0].nnz == 2
    assert lookup.coverage("total") == 0.5
    pre = co.CoocLookup({("total", 0): table}, 1).prefetch({"total": np.array([1, 2**32 + 1])})
    m, key_counts = pre.rows("total", np.array([1, 2**32 + 1]), 4)
    assert key_counts.tolist() == [2, 0] and m[1].nnz == 0

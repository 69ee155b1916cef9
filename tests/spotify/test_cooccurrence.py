"""The six kinds on hand-computed playlists, sharding, the top-N reduction and lookups."""

import numpy as np
import pandas as pd

from spotify_mpc import cooccurrence as co
from spotify_mpc.hashing import hash_strings
from spotify_mpc.text import ngrams

# p0: 0 1 2 3 ("Rock"), p1: 1 2 0 ("rock!"), p2: 2 1 4 1 ("jazz")
PART = pd.DataFrame({"pid": [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2], "pos": [0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3],
                     "track_id": [0, 1, 2, 3, 1, 2, 0, 2, 1, 4, 1],
                     "name": ["Rock"] * 4 + ["rock!"] * 3 + ["jazz"] * 4})


def counts(kind, vocab, n_shards=3):
    df = co.partial_counts(PART, kind, np.sort(np.asarray(vocab, dtype=np.int64)), n_shards)
    assert (df.shard == co.shard_of(df.key.to_numpy(), n_shards)).all()
    pairs = {(k, p): c for k, p, c in zip(df.key, df.partner, df["count"]) if p >= 0}
    key_counts = {k: c for k, p, c in zip(df.key, df.partner, df["count"]) if p < 0}
    return pairs, key_counts


def test_total():
    pairs, kc = counts("total", [1, 2])
    assert pairs == {(1, 0): 2, (1, 2): 3, (1, 3): 1, (1, 4): 1, (2, 0): 2, (2, 1): 3, (2, 3): 1, (2, 4): 1}
    assert kc == {1: 3, 2: 3}  # playlists containing the key


def test_forward_and_forward_10():
    pairs, kc = counts("forward", [1, 2])
    assert pairs == {(1, 2): 2, (1, 4): 1, (2, 3): 1, (2, 0): 1, (2, 1): 1}
    assert kc == {1: 3, 2: 3}  # occurrences with a follower (p2's last 1 has none)
    pairs, kc = counts("forward_10", [1])
    assert pairs == {(1, 2): 2, (1, 3): 1, (1, 0): 1, (1, 4): 1}  # 1 -> 1 (a repeat) is not a pair
    assert kc == {1: 3}


def test_pair_and_triple():
    pair = int(co.pair_codes(np.array([1]), np.array([2]))[0])
    pairs, kc = counts("forward_10_pair", [pair])
    assert pairs == {(pair, 3): 1, (pair, 0): 1} and kc == {pair: 2}
    triple = int(co.triple_codes(np.array([0]), np.array([1]), np.array([2]))[0])
    pairs, kc = counts("forward_10_triple", [triple])
    assert pairs == {(triple, 3): 1} and kc == {triple: 1}


def test_ngram_track():
    whole, gram = hash_strings(["=rock", " r"])
    assert "=rock" in ngrams("rock") and " r" in ngrams("rock")
    pairs, kc = counts("ngram_track", [whole, gram])
    for g in (whole, gram):  # "Rock" and "rock!" normalize alike; "jazz" shares neither gram
        assert {p: c for (k, p), c in pairs.items() if k == g} == {0: 2, 1: 2, 2: 2, 3: 1}
        assert kc[g] == 2


def test_unknown_keys_have_zero_count_rows():
    pairs, kc = counts("total", [1, 77])
    assert kc[77] == 0 and not any(k == 77 for k, _ in pairs)


def test_reduce_sums_parts_keeps_top_n_and_skips_held_out_parts():
    vocab = np.array([1, 2], dtype=np.int64)
    part = co.partial_counts(PART, "total", vocab, 1)
    out = co.reduce_shard(iter([part, co.empty_partial(), part]), shard=0, top_n=2)
    got = {(k, p): c for k, p, c in zip(out.key, out.partner, out["count"])}
    # key 1: 0:4, 2:6, 3:2, 4:2 -> top 2 = {2, 0}; key counts doubled
    assert got == {(1, 2): 6, (1, 0): 4, (2, 1): 6, (2, 0): 4, (1, -1): 6, (2, -1): 6}
    # ties at the cut go to the more popular (smaller) track id
    out1 = co.reduce_shard([part], shard=0, top_n=3)
    assert sorted(out1[(out1.key == 1) & (out1.partner >= 0)].partner) == [0, 2, 3]


def test_lookup_normalizes_by_key_count():
    vocab = np.array([1, 2], dtype=np.int64)
    table = co.reduce_shard([co.partial_counts(PART, "total", vocab, 2)], shard=0, top_n=10)
    table2 = co.reduce_shard([co.partial_counts(PART, "total", vocab, 2)], shard=1, top_n=10)
    lookup = co.CoocLookup({("total", 0): lambda: table, ("total", 1): lambda: table2}, n_shards=2)
    m, kc = lookup.rows("total", np.array([1, 2, 99]), n_tracks=5)
    assert kc.tolist() == [3, 3, 0]
    assert np.allclose(m.toarray()[0], [2 / 8, 0, 3 / 8, 1 / 8, 1 / 8]) and m[2].nnz == 0


def test_top_per_row():
    import scipy.sparse as sp

    m = sp.csr_matrix(np.array([[5, 1, 5, 3], [0, 2, 0, 0]]))
    r, c, v = co.top_per_row(m, 2)
    assert sorted(zip(r.tolist(), c.tolist())) == [(0, 0), (0, 2), (1, 1)]


def test_coverage_tells_counted_keys_from_unknown_ones():
    vocab = np.array([1, 2], dtype=np.int64)
    table = co.reduce_shard([co.partial_counts(PART, "total", vocab, 1)], shard=0, top_n=10)
    lookup = co.CoocLookup({("total", 0): lambda: table}, n_shards=1)
    assert lookup.coverage("total") == 1.0
    lookup.rows("total", np.array([1, 3, 4, 77]), n_tracks=5)  # only key 1 was in the vocabulary
    assert lookup.coverage("total") == 0.25


def test_reduced_table_is_sorted_by_key_count_row_first():
    vocab = np.array([1, 2], dtype=np.int64)
    out = co.reduce_shard([co.partial_counts(PART, "forward_10", vocab, 1)], shard=0, top_n=10)
    assert (np.diff(out.key.to_numpy()) >= 0).all()
    firsts = out.groupby("key").partner.first()
    assert (firsts == -1).all()


def test_prefetch_serves_the_same_rows():
    vocab = np.array([1, 2], dtype=np.int64)
    tables = {("total", s): co.reduce_shard([co.partial_counts(PART, "total", vocab, 2)], shard=s, top_n=10)
              for s in range(2)}
    lookup = co.CoocLookup(tables, n_shards=2)
    sub = lookup.prefetch({"total": np.array([2, 1])})
    a, ka = lookup.rows("total", np.array([1, 2]), 5)
    b, kb = sub.rows("total", np.array([1, 2]), 5)
    assert (a != b).nnz == 0 and ka.tolist() == kb.tolist()
    vocab_keys, _, m = sub.kinds["total"]
    assert vocab_keys.tolist() == [1, 2]
    assert m.nnz == sum(int((t["partner"] >= 0).sum()) for t in tables.values())


def test_prefetch_matches_the_full_lookup_on_many_keys_and_shards():
    """Random playlists, 3 shards, keys outside the vocabulary: same rows, same coverage."""
    rng = np.random.default_rng(0)
    n_pl, n_tracks = 300, 400
    lengths = rng.integers(2, 30, n_pl)
    part = pd.DataFrame({
        "pid": np.repeat(np.arange(n_pl), lengths),
        "pos": np.concatenate([np.arange(n) for n in lengths]),
        "track_id": rng.zipf(1.3, lengths.sum()) % n_tracks,
        "name": "x",
    })
    vocab = np.unique(rng.choice(n_tracks, 150, replace=False))
    for kind in ("total", "forward_10"):
        tables = {(kind, s): co.reduce_shard([co.partial_counts(part, kind, vocab if kind == "total" else
                                              np.unique(co._position_keys(part["track_id"].to_numpy(np.int64),
                                              np.repeat(np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths),
                                              kind)), 3)], shard=s, top_n=20) for s in range(3)}
        full, pre = co.CoocLookup(tables, n_shards=3), co.CoocLookup(tables, n_shards=3)
        asked = np.unique(np.concatenate([vocab[::2], [10_000, 10_001]]))  # two unknown keys
        sub = pre.prefetch({kind: asked})
        a, ka = full.rows(kind, asked, n_tracks)
        b, kb = sub.rows(kind, asked, n_tracks)
        assert a.shape == b.shape and abs(a - b).max() < 1e-6 and ka.tolist() == kb.tolist()
        assert full.coverage(kind) == pre.coverage(kind) < 1.0
        # only keys nobody counted: empty rows, no error
        unknown = np.array([10_000, 10_001])
        m, kc = pre.prefetch({kind: unknown}).rows(kind, unknown, n_tracks)
        assert m.shape == (2, n_tracks) and m.nnz == 0 and kc.tolist() == [0, 0]

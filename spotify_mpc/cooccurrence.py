"""The six co-occurrence kinds: per-part partial counts, sharded by key, and their reduction.

Kinds (key -> partner track), counted over the training playlists of one part:
- total:             track -> every other track of the same playlist (once per playlist)
- forward:           track -> the track right after it
- forward_10:        track -> each of the next 10 tracks
- forward_10_pair:   (previous track, track) -> each of the next 10 tracks
- forward_10_triple: (two before, previous, track) -> each of the next 10 tracks
- ngram_track:       title n-gram (see text.ngrams) -> every track of the playlist
Key counts: playlists containing the key (total, ngram_track), or occurrences of the key
with at least one follower (the forward kinds). A feature is count / (key count + 5).

Keys are int64 codes: a track id, a stable hash of a pair/triple of ids, or of an n-gram.
Only keys occurring in the challenge sets are counted (that is all the features ever ask
for). Partials and reductions are long DataFrames:
    shard, key, partner, count        (partner = -1: the row holds the key count)
Every vocabulary key has a key-count row in every partial, even with count 0, so a reduction
knows its shard's vocabulary from any one part and can add parts as sparse matrices of one
shape, one part at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from spotify_mpc.arrays import unique
from spotify_mpc.challenge import ChallengeView
from spotify_mpc.hashing import combine, shard_of
from spotify_mpc.text import title_ngram_pairs

KINDS = ("total", "forward", "forward_10", "forward_10_pair", "forward_10_triple", "ngram_track")
WINDOW = 10
KEY_SMOOTHING = 5.0


def pair_codes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return combine(a, b)


def triple_codes(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return combine(a, b, c)


# --------------------------------------------------------------------------- keys


def playlist_keys(view: ChallengeView, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(playlist row, key code) pairs a challenge set asks about for `kind`.

    Seeds are used in pos order; unseen seeds (negative ids) give no keys.
    """
    n = len(view)
    if kind == "ngram_track":
        return title_ngram_pairs(view.names)
    rows = np.repeat(np.arange(n), view.n_seeds)
    t = view.seed_tracks
    if kind in ("total", "forward", "forward_10"):
        ok = t >= 0
        return rows[ok], t[ok]
    width = 2 if kind == "forward_10_pair" else 3
    last = view.seed_ptr[1:] - 1
    has = view.n_seeds >= width
    idx = [last[has] - (width - 1 - j) for j in range(width)]
    cols = [t[i] for i in idx]
    ok = np.all([c >= 0 for c in cols], axis=0) if len(cols[0]) else np.zeros(0, bool)
    code = pair_codes(*cols) if width == 2 else triple_codes(*cols)
    return np.flatnonzero(has)[ok], code[ok]


def challenge_keys(views: Iterable[ChallengeView]) -> dict[str, np.ndarray]:
    """Sorted distinct key codes per kind over all challenge sets."""
    views = list(views)
    return {kind: unique(np.concatenate([playlist_keys(v, kind)[1] for v in views] or [np.zeros(0, np.int64)]))
            for kind in KINDS}


# --------------------------------------------------------------------------- partial counts


def _position_keys(tracks: np.ndarray, start: np.ndarray, kind: str) -> np.ndarray:
    """Key code at each position of the concatenated playlists (-1 where none)."""
    n = len(tracks)
    if kind in ("forward", "forward_10"):
        return tracks.astype(np.int64)
    width = 2 if kind == "forward_10_pair" else 3
    offset = np.arange(n) - start
    code = np.full(n, -1, dtype=np.int64)
    ok = offset >= width - 1
    i = np.flatnonzero(ok)
    cols = [tracks[i - (width - 1 - j)] for j in range(width)]
    code[i] = pair_codes(*cols) if width == 2 else triple_codes(*cols)
    return code


def _locate(vocab: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row in vocab, whether the key is in vocab) of each key code (-1: no key)."""
    kidx_c = np.minimum(np.searchsorted(vocab, keys), max(len(vocab) - 1, 0))
    is_key = (keys >= 0) & (len(vocab) > 0) & (vocab[kidx_c] == keys if len(vocab) else False)
    return kidx_c, is_key


def _forward_counts(tracks: np.ndarray, pl: np.ndarray, kidx_c: np.ndarray, is_key: np.ndarray, n_keys: int,
                    window: int, n_cols: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """key x partner counts over the next `window` positions, and key counts.

    kidx_c: each position's key row (0..n_keys-1), meaningful where is_key (see _locate)."""
    n = len(tracks)
    src = np.flatnonzero(is_key)
    rows, cols = [], []
    has_follower = np.zeros(n, dtype=bool)
    for d in range(1, window + 1):
        s = src[src + d < n]
        s = s[pl[s + d] == pl[s]]
        has_follower[s] = True
        partner = tracks[s + d]
        keep = (partner != tracks[s]) & (partner >= 0)
        rows.append(kidx_c[s[keep]])
        cols.append(partner[keep])
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    m = sp.csr_matrix((np.ones(len(r), dtype=np.int32), (r, c)), shape=(n_keys, n_cols))
    m.sum_duplicates()
    key_counts = np.bincount(kidx_c[has_follower & is_key], minlength=n_keys)
    return m, key_counts


def _membership_counts(pl_rows: np.ndarray, key_codes: np.ndarray, vocab: np.ndarray,
                       a: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray]:
    """key x track counts of playlists containing both; keys given as (playlist, code) pairs.

    a: binary playlist x track matrix. The product B^T A is one sparse matrix product.
    """
    n_pl = a.shape[0]
    kidx = np.searchsorted(vocab, key_codes)
    kidx_c = np.minimum(kidx, max(len(vocab) - 1, 0))
    ok = (vocab[kidx_c] == key_codes) if len(vocab) else np.zeros(len(key_codes), bool)
    b = sp.csr_matrix((np.ones(int(ok.sum()), dtype=np.int32), (pl_rows[ok], kidx_c[ok])),
                      shape=(n_pl, len(vocab)))
    b.sum_duplicates()
    b.data[:] = 1  # a key counts once per playlist
    m = (b.T.tocsr() @ a).tocsr()
    key_counts = np.asarray(b.sum(axis=0)).ravel()
    return m, key_counts


def partial_counts(part: pd.DataFrame, kind: str, vocab: np.ndarray, n_shards: int) -> pd.DataFrame:
    """Counts of one kind over one renumbered part (pid, pos, track_id, name), sharded by key.

    Counted one shard of keys at a time, so the peak is about one shard's product plus the
    output, not the whole product twice over. Rows are grouped by shard, key-count rows first.
    """
    if n_shards > 127:
        raise ValueError(f"at most 127 co-occurrence shards are supported, got {n_shards}")
    part = part.sort_values(["pid", "pos"], kind="stable")
    pid = part["pid"].to_numpy()
    tracks = part["track_id"].to_numpy().astype(np.int64)
    uniq_pids, pl, lengths = np.unique(pid, return_inverse=True, return_counts=True)
    n_pl = len(uniq_pids)
    vocab = np.asarray(vocab, dtype=np.int64)
    vocab_shard = shard_of(vocab, n_shards)
    n_cols = int(tracks.max()) + 1 if len(tracks) else 1
    if kind in ("total", "ngram_track"):
        if kind == "total":
            key_rows, key_codes = pl, tracks
        else:
            first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            key_rows, key_codes = title_ngram_pairs(list(part["name"].to_numpy()[first]))
        good = tracks >= 0
        a = sp.csr_matrix((np.ones(int(good.sum()), dtype=np.int32), (pl[good], tracks[good])), shape=(n_pl, n_cols))
        a.sum_duplicates()
        a.data[:] = 1  # binary: a track counts once per playlist
        # Each shard's product only needs the (playlist, key) pairs whose key is in that shard.
        code_shard = shard_of(key_codes, n_shards)
        count = lambda sub, s: _membership_counts(key_rows[code_shard == s], key_codes[code_shard == s],  # noqa: E731
                                                  sub, a)
    else:
        start = np.concatenate([[0], np.cumsum(lengths)[:-1]])[pl]
        keys = _position_keys(tracks, start, kind)
        window = 1 if kind == "forward" else WINDOW
        # Keys located in the whole vocabulary once; a shard's rows are its keys' ranks in it.
        gidx, found = _locate(vocab, keys)
        rank_in_shard = np.zeros(len(vocab), dtype=np.int64)
        for s in range(n_shards):
            rank_in_shard[vocab_shard == s] = np.arange(int((vocab_shard == s).sum()))
        key_rows, key_shard = (rank_in_shard[gidx], vocab_shard[gidx]) if len(vocab) else (gidx, gidx)
        count = lambda sub, s: _forward_counts(tracks, pl, key_rows, found & (key_shard == s), len(sub),  # noqa: E731
                                               window, n_cols)
    key_dtype = _key_dtype(vocab)
    cols: dict[str, list[np.ndarray]] = {"shard": [], "key": [], "partner": [], "count": []}
    for s in range(n_shards):
        sub = vocab[vocab_shard == s]
        m, kc = count(sub, s)
        # Entries in the CSR's storage order (as its COO form lists them), keys repeated per row.
        key = np.repeat(sub.astype(key_dtype), np.diff(m.indptr))
        partner, n = m.indices, m.data
        if kind == "total":
            keep = partner != key  # a track does not co-occur with itself
            key, partner, n = key[keep], partner[keep], n[keep]
        cols["shard"].append(np.full(len(sub) + len(key), s, dtype=np.int8))
        cols["key"] += [sub.astype(key_dtype), key]
        cols["partner"] += [np.full(len(sub), -1, np.int32), partner.astype(np.int32, copy=False)]
        cols["count"] += [kc.astype(np.int32), n.astype(np.int32, copy=False)]
        del m, key, partner, n
    # The `total` partial of a 10k-playlist part has tens of millions of rows: 13 bytes each,
    # and no second copy when the frame is built.
    return pd.DataFrame({k: np.concatenate(v) for k, v in cols.items()}, copy=False)


def _key_dtype(vocab: np.ndarray) -> type:
    """Track ids fit in int32 (4 bytes a row saved); hashed pair/triple/n-gram keys need int64."""
    return np.int32 if not len(vocab) or vocab.max() < 2**31 else np.int64


def empty_partial() -> pd.DataFrame:
    return pd.DataFrame({"shard": np.zeros(0, np.int8), "key": np.zeros(0, np.int64),
                         "partner": np.zeros(0, np.int32), "count": np.zeros(0, np.int32)})


# --------------------------------------------------------------------------- reduction


def _shard_rows(df: pd.DataFrame, shard: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(key, partner, count) arrays of one shard; partials are grouped by shard, so slice if sorted."""
    sh = df["shard"].to_numpy()
    if len(sh) and np.all(sh[1:] >= sh[:-1]):
        lo, hi = np.searchsorted(sh, np.array([shard, shard + 1], dtype=sh.dtype))  # int8: no int64 copy of sh
        sel = slice(int(lo), int(hi))
    else:
        sel = np.flatnonzero(sh == shard)
    return (df["key"].to_numpy()[sel].astype(np.int64), df["partner"].to_numpy()[sel],
            df["count"].to_numpy()[sel])


def reduce_shard(partials: Iterable[pd.DataFrame], shard: int, top_n: int = 1000) -> pd.DataFrame:
    """Sum one shard over parts (one part in memory at a time) and keep the top_n partners.

    Returns key, partner, count rows sorted by key; each key's count row (partner -1) comes
    first, then its partners (any order). Ties in count at the cut are broken toward the
    more popular partner (the smaller track id).
    """
    vocab = None
    acc = None
    key_counts = None
    for df in partials:
        key, partner, count = _shard_rows(df, shard)
        del df
        is_kc = partner == -1
        if not is_kc.any():
            continue  # a held-out part: nothing counted
        kc_keys = key[is_kc]
        if vocab is None:
            vocab = np.sort(kc_keys)
            acc = sp.csr_matrix((len(vocab), 1), dtype=np.int64)
            key_counts = np.zeros(len(vocab), dtype=np.int64)
        elif len(kc_keys) != len(vocab) or not np.array_equal(np.sort(kc_keys), vocab):
            raise ValueError(f"co-occurrence shard {shard}: parts were counted with different "
                             "challenge keys; recompute all cooccurrence_partials together")
        key_counts[np.searchsorted(vocab, kc_keys)] += count[is_kc]
        pr = ~is_kc
        rows = _vocab_rows(vocab, key[pr])
        p = partner[pr]
        n_cols = max(acc.shape[1], int(p.max()) + 1 if len(p) else 1)
        acc.resize((len(vocab), n_cols))  # parts may know different numbers of tracks
        acc = acc + sp.csr_matrix((count[pr].astype(np.int64), (rows, p)), shape=acc.shape)
        del key, partner, count, rows, p
    if vocab is None:
        return pd.DataFrame({"key": np.zeros(0, np.int64), "partner": np.zeros(0, np.int32),
                             "count": np.zeros(0, np.int32)})
    rows, cols, vals = top_per_row(acc.tocsr(), top_n)
    del acc
    # Interleave: each key's count row, then its partners (rows come grouped in vocab order).
    per_key = np.bincount(rows, minlength=len(vocab)) + 1
    start = np.cumsum(per_key) - per_key
    n = len(vocab) + len(rows)
    out_key = np.repeat(vocab, per_key)
    out_partner = np.empty(n, dtype=np.int32)
    out_count = np.empty(n, dtype=np.int32)  # sums over parts stay far below 2**31
    out_partner[start] = -1
    out_count[start] = key_counts
    first_of_row = np.searchsorted(rows, rows)
    pos = start[rows] + 1 + (np.arange(len(rows)) - first_of_row)
    out_partner[pos] = cols
    out_count[pos] = vals
    return pd.DataFrame({"key": out_key.astype(_key_dtype(vocab)), "partner": out_partner, "count": out_count},
                        copy=False)


def _vocab_rows(vocab: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """np.searchsorted(vocab, keys); one search per run of equal keys when they come sorted,
    as partial_counts writes them (millions of rows, a few thousand keys per shard)."""
    if len(keys) < 2 or not np.all(keys[1:] >= keys[:-1]):
        return np.searchsorted(vocab, keys)
    starts = np.concatenate([[0], np.flatnonzero(keys[1:] != keys[:-1]) + 1])
    lengths = np.diff(np.append(starts, len(keys)))
    return np.repeat(np.searchsorted(vocab, keys[starts]), lengths)


def top_per_row(m: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, col, value) of the k largest values of each row (any order within a row).

    Rows with at most k entries are kept whole; longer rows use argpartition (linear time).
    Integer ties are broken toward the smaller column (the more popular track).
    """
    m = m.tocsr()
    counts = np.diff(m.indptr)
    keep = np.ones(len(m.data), dtype=bool)
    integer = np.issubdtype(m.data.dtype, np.integer)
    for r in np.flatnonzero(counts > k):
        s, e = m.indptr[r], m.indptr[r + 1]
        d = m.data[s:e]
        key = d.astype(np.int64) * (1 << 32) - m.indices[s:e] if integer else d
        top = np.argpartition(-key, k - 1)[:k]
        keep[s:e] = False
        keep[s + top] = True
    rows = np.repeat(np.arange(m.shape[0]), counts)
    return rows[keep], m.indices[keep].astype(np.int64), m.data[keep]


# --------------------------------------------------------------------------- lookups


class _Coverage:
    """Counts of the keys asked for and of those in the counted vocabulary, per kind."""

    _asked: dict[str, int]
    _known: dict[str, int]

    def coverage(self, kind: str) -> float:
        """Share of the keys asked for so far that were in the counted vocabulary (1.0 if none)."""
        asked = self._asked.get(kind, 0)
        return self._known.get(kind, 0) / asked if asked else 1.0


class CoocLookup(_Coverage):
    """Normalized co-occurrence rows for given keys, read from reduced (kind, shard) tables.

    tables: Mapping[(kind, shard)] -> zero-argument loader of a `reduce_shard` DataFrame.
    Only the shards holding requested keys are loaded, one at a time, and only their
    requested rows are kept.
    """

    def __init__(self, tables: Mapping[tuple[str, int], object], n_shards: int):
        self.tables = tables
        self.n_shards = n_shards
        self._asked: dict[str, int] = {}
        self._known: dict[str, int] = {}


    def rows(self, kind: str, codes: np.ndarray, n_tracks: int) -> tuple[sp.csr_matrix, np.ndarray]:
        """(len(codes) x n_tracks CSR of count / (key count + 5), key counts) for sorted distinct codes."""
        codes = np.asarray(codes, dtype=np.int64)
        self._asked[kind] = self._asked.get(kind, 0) + len(codes)
        out_r, out_c, out_v = [], [], []
        key_counts = np.zeros(len(codes), dtype=np.int64)
        shards = shard_of(codes, self.n_shards)
        for s in np.unique(shards):
            want = np.flatnonzero(shards == s)
            key, partner, count = self._table(kind, int(s))
            # Tables are sorted by key: each wanted key is one contiguous run of rows.
            lo, n = _runs(key, codes[want])
            idx = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(n.sum())
            row_of = np.repeat(want, n)
            sub_p, sub_c = partner[idx], count[idx]
            kcm = sub_p == -1
            key_counts[row_of[kcm]] = sub_c[kcm]
            self._known[kind] = self._known.get(kind, 0) + int(kcm.sum())  # vocabulary keys have a count row
            out_r.append(row_of[~kcm])
            out_c.append(sub_p[~kcm])
            out_v.append(sub_c[~kcm].astype(np.float64))
        r = np.concatenate(out_r) if out_r else np.zeros(0, np.int64)
        c = np.concatenate(out_c) if out_c else np.zeros(0, np.int64)
        v = np.concatenate(out_v) if out_v else np.zeros(0)
        v = v / (key_counts[r] + KEY_SMOOTHING)
        m = sp.csr_matrix((v.astype(np.float32), (r, c)), shape=(len(codes), n_tracks))
        return m, key_counts

    def _table(self, kind: str, shard: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        item = self.tables[(kind, shard)]
        df = item() if callable(item) else item
        # No copies: the columns keep their stored dtypes (int32 for track keys; _runs searches
        # in that dtype), and tables stored as arrow are views of the mapped file, so only the
        # pages of the key column (the check below) and of the rows asked for are ever read.
        key, partner, count = df["key"].to_numpy(), df["partner"].to_numpy(), df["count"].to_numpy()
        if len(key) and not np.all(key[1:] >= key[:-1]):  # written by reduce_shard sorted; be safe
            order = np.argsort(key, kind="stable")
            key, partner, count = key[order], partner[order], count[order]
        return key, partner, count

    def prefetch(self, codes_by_kind: Mapping[str, np.ndarray]) -> "PrefetchedCooc":
        """A lookup holding only the rows of the given keys: each table is read once here,
        then many small batches of playlists are scored from memory. The rows are kept as one
        normalized float32 CSR per kind (8 bytes a partner, half of the table rows)."""
        kinds = {}
        for kind, codes in codes_by_kind.items():
            codes = unique(np.asarray(codes, dtype=np.int64))
            shards = shard_of(codes, self.n_shards)
            keys, counts, mats = [], [], []
            for s in range(self.n_shards):
                want = codes[shards == s]
                if not len(want):
                    continue
                key, partner, count = self._table(kind, s)
                lo, n = _runs(key, want)
                idx = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(n.sum())
                k, p, c = key[idx].astype(np.int64), partner[idx], count[idx]
                del key, partner, count, idx
                is_kc = p == -1
                vocab = k[is_kc]  # sorted: tables are sorted by key, one count row per key
                kc = c[is_kc].astype(np.int64)
                rows = np.searchsorted(vocab, k[~is_kc])
                v = (c[~is_kc] / (kc[rows] + KEY_SMOOTHING)).astype(np.float32)
                m = sp.csr_matrix((v, (rows, p[~is_kc])), shape=(len(vocab), int(p.max(initial=-1)) + 1))
                keys.append(vocab)
                counts.append(kc)
                mats.append(m)
            if sum(len(k) for k in keys):  # a kind none of whose keys was counted: no rows
                width = max(m.shape[1] for m in mats)
                for m in mats:
                    m.resize((m.shape[0], width))
                order_keys = np.concatenate(keys)
                order = np.argsort(order_keys, kind="stable")
                kinds[kind] = (order_keys[order], np.concatenate(counts)[order], sp.vstack(mats, format="csr")[order])
        return PrefetchedCooc(kinds, self._asked, self._known)


def _runs(key: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first row, number of rows) of each code's run in `key` (sorted, any integer dtype).

    Searched in key's own dtype: np.searchsorted would otherwise copy a whole int32 table
    to int64 on every call. A code outside that dtype's range is in no run.
    """
    codes = np.asarray(codes, dtype=np.int64)
    if key.dtype == np.int64:
        lo = np.searchsorted(key, codes, side="left")
        return lo, np.searchsorted(key, codes, side="right") - lo
    info = np.iinfo(key.dtype)
    fits = (codes >= info.min) & (codes <= info.max)
    small = np.where(fits, codes, 0).astype(key.dtype)
    lo = np.searchsorted(key, small, side="left")
    n = np.where(fits, np.searchsorted(key, small, side="right") - lo, 0)
    return lo, n


class PrefetchedCooc(_Coverage):
    """`CoocLookup.rows` over the prefetched keys; a key that was not prefetched gets an empty
    row and counts as outside the vocabulary. Coverage counts go to the parent lookup."""

    def __init__(self, kinds: Mapping[str, tuple[np.ndarray, np.ndarray, sp.csr_matrix]],
                 asked: dict[str, int], known: dict[str, int]):
        self.kinds = dict(kinds)
        self._asked, self._known = asked, known

    def rows(self, kind: str, codes: np.ndarray, n_tracks: int) -> tuple[sp.csr_matrix, np.ndarray]:
        codes = np.asarray(codes, dtype=np.int64)
        self._asked[kind] = self._asked.get(kind, 0) + len(codes)
        if kind not in self.kinds or not len(codes):
            return sp.csr_matrix((len(codes), n_tracks), dtype=np.float32), np.zeros(len(codes), np.int64)
        vocab, kc, m = self.kinds[kind]
        i = np.minimum(np.searchsorted(vocab, codes), len(vocab) - 1)
        hit = vocab[i] == codes
        self._known[kind] = self._known.get(kind, 0) + int(hit.sum())
        sub = m[i[hit]]  # copies only the rows asked for; keys outside the vocabulary: empty rows
        lengths = np.zeros(len(codes), dtype=np.int64)
        lengths[hit] = np.diff(sub.indptr)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        out = sp.csr_matrix((sub.data, sub.indices, indptr), shape=(len(codes), n_tracks))
        return out, np.where(hit, kc[i], 0)

"""RecSys Challenge 2018 metrics for one playlist, exactly which variant is documented here.

G = hidden tracks (distinct; unseen ones are still in G and never match), R = ranked
recommendations.

- R-precision, with artist credit, as the organizers published it:
      (|S_T ∩ G_T| + 0.25 * |S_A ∩ G_A|) / |G_T|
  S_T = distinct tracks among the first |G| recommendations, G_T = distinct hidden tracks,
  S_A / G_A = distinct artists of those same two lists. Artists of exactly matched tracks
  count too (the formula does not exclude them), so a perfect list scores above 1.
- NDCG, as in the organizers' evaluation code: R truncated to 500, repeats dropped keeping
  the first; DCG = sum_i rel_i / log2(i + 1) over 1-based ranks; IDCG = DCG of a perfect list
  of min(|G|, 500) relevant tracks; NDCG = DCG / IDCG.
- Recommended-songs clicks: floor((rank of the first relevant track - 1) / 10) with 1-based
  ranks among the first 500, i.e. the number of refreshes of 10 before a hit; 51 if none.
"""

from __future__ import annotations

import numpy as np

from spotify_mpc import arrays

K = 500
NO_CLICK = 51
ARTIST_CREDIT = 0.25


def _unique_in_order(a: np.ndarray) -> np.ndarray:
    _, first = np.unique(a, return_index=True)
    return a[np.sort(first)]


def r_precision(hidden: np.ndarray, hidden_artists: np.ndarray, rec: np.ndarray, rec_artists: np.ndarray) -> float:
    hidden = np.asarray(hidden)
    g_t = np.unique(hidden)
    n = len(g_t)
    if n == 0:
        raise ValueError("R-precision is undefined for a playlist without hidden tracks")
    top = slice(0, n)
    s_t = np.unique(np.asarray(rec)[top])
    tracks = len(np.intersect1d(s_t, g_t[g_t >= 0]))
    g_a = np.unique(np.asarray(hidden_artists))
    s_a = np.unique(np.asarray(rec_artists)[top])
    artists = len(np.intersect1d(s_a, g_a[g_a >= 0]))
    return (tracks + ARTIST_CREDIT * artists) / n


def ndcg(hidden: np.ndarray, rec: np.ndarray, k: int = K) -> float:
    g = np.unique(np.asarray(hidden))
    if len(g) == 0:
        raise ValueError("NDCG is undefined for a playlist without hidden tracks")
    r = _unique_in_order(np.asarray(rec)[:k])
    rel = np.isin(r, g[g >= 0])
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = float(discounts[:len(r)][rel].sum())
    idcg = float(discounts[:min(len(g), k)].sum())
    return dcg / idcg


def clicks(hidden: np.ndarray, rec: np.ndarray, k: int = K) -> int:
    g = np.asarray(hidden)
    hits = np.flatnonzero(np.isin(np.asarray(rec)[:k], g[g >= 0]))
    return int(hits[0] // 10) if len(hits) else NO_CLICK


def all_scores(hidden_ptr: np.ndarray, hidden: np.ndarray, hidden_artists: np.ndarray, rec: np.ndarray,
               rec_artists: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """r_precision, ndcg and clicks of every playlist at once, equal to the functions above bit for bit.

    Playlist i: hidden[hidden_ptr[i]:hidden_ptr[i + 1]] (and its artists), recommendations
    rec[i] and rec_artists[i] (2-D, one row per playlist). The distinct-value and membership
    work runs on (playlist, value) codes in one sort each; only DCG keeps a sum per playlist,
    taken over the same array the per-playlist function sums, so the float is the same.
    """
    hidden_ptr = np.asarray(hidden_ptr, np.int64)
    n = len(hidden_ptr) - 1
    if n == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0, np.int64)
    rec, rec_artists = np.asarray(rec, np.int64).reshape(n, -1), np.asarray(rec_artists, np.int64).reshape(n, -1)
    hidden, hidden_artists = np.asarray(hidden, np.int64), np.asarray(hidden_artists, np.int64)
    lengths = np.diff(hidden_ptr)
    if (lengths == 0).any():
        raise ValueError("R-precision is undefined for a playlist without hidden tracks")
    h_row = np.repeat(np.arange(n, dtype=np.int64), lengths)
    width = rec.shape[1]
    r_row = np.repeat(np.arange(n, dtype=np.int64), width)

    lo, span = arrays.code_space(n, hidden, rec)
    g = arrays.unique(arrays.row_codes(h_row, hidden, lo, span))  # distinct hidden tracks per playlist
    n_g = np.bincount(g // span, minlength=n)
    g_known = g[g % span + lo >= 0]  # unseen tracks (negative ids) count in |G| but never match
    rec_codes = arrays.row_codes(r_row, rec.ravel(), lo, span)

    # R-precision: distinct tracks / artists among the first |G| recommendations
    top = (np.arange(width)[None, :] < n_g[:, None]).ravel()
    s_t = arrays.unique(rec_codes[top])
    tracks = np.bincount(s_t[arrays.isin_sorted(s_t, g_known)] // span, minlength=n)
    a_lo, a_span = arrays.code_space(n, hidden_artists, rec_artists)
    g_a = arrays.unique(arrays.row_codes(h_row, hidden_artists, a_lo, a_span))
    g_a = g_a[g_a % a_span + a_lo >= 0]
    s_a = arrays.unique(arrays.row_codes(r_row[top], rec_artists.ravel()[top], a_lo, a_span))
    artists = np.bincount(s_a[arrays.isin_sorted(s_a, g_a)] // a_span, minlength=n)
    r_prec = (tracks + ARTIST_CREDIT * artists) / n_g

    # clicks: the first of the top k (repeats included) that is a hidden track
    in_k = (np.arange(width) < k)[None, :].repeat(n, axis=0).ravel()
    hit = (arrays.isin_sorted(rec_codes, g_known) & in_k).reshape(n, width)
    click = np.where(hit.any(axis=1), hit.argmax(axis=1) // 10, NO_CLICK).astype(np.int64)

    # NDCG: the top k with repeats dropped (first kept); rank = position among the kept ones
    kept = (arrays.first_occurrence(rec_codes) & in_k).reshape(n, width)
    rank = np.cumsum(kept, axis=1) - 1
    rel = kept & hit
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    gains = discounts[rank[rel]]  # row by row, in rank order: each row's slice is what ndcg() sums
    ends = np.cumsum(rel.sum(axis=1))
    dcg = np.zeros(n)
    for i in np.flatnonzero(ends - np.r_[0, ends[:-1]]).tolist():
        dcg[i] = gains[(ends[i - 1] if i else 0):ends[i]].sum()
    ideal = np.minimum(n_g, k)
    idcg = np.zeros(n)
    for m in np.unique(ideal).tolist():
        idcg[ideal == m] = discounts[:m].sum()
    return r_prec, dcg / idcg, click

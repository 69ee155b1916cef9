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

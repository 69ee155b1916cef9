"""Generic features per challenge playlist; candidates and per-candidate features + labels.

Candidates of a playlist (then minus its seeds):
  the `popular` most popular tracks; the target artist's top `artist` tracks for artist
  playlists; the top `cooc` tracks by summed normalized `total` co-occurrence with the seeds;
  the top `ngram` tracks by title n-gram co-occurrence.
Features of (playlist, candidate), in FEATURES order:
  the six co-occurrence scores (sum over the playlist's keys of count / (key count + 5));
  track and artist popularity (share of all training entries); is-target-artist,
  other-is-target-artist (artist playlist, another artist); the share of seeds by the
  candidate's artist; and the playlist's generic features broadcast to its candidates.
Scores and popularities are log-compressed (log1p of 1000 x value) so the network sees
well-scaled inputs; label = the candidate is one of the hidden tracks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from spotify_mpc.arrays import unique
from spotify_mpc.challenge import ChallengeView
from spotify_mpc.cooccurrence import KINDS, CoocLookup, playlist_keys, top_per_row
from spotify_mpc.text import normalize

GENERIC = ["n_seeds_log", "has_title", "random_seeds", "is_artist_playlist", "mean_seed_pop", "unseen_seed_share"]
FEATURES = [*KINDS, "track_pop", "artist_pop", "is_target_artist", "other_is_target_artist",
            "seed_artist_share", "mean_ngram_pop", *GENERIC]


@dataclass(frozen=True)
class CandidateParams:
    popular: int = 1000
    artist: int = 500
    cooc: int = 3000
    ngram: int = 3000


@dataclass
class TrackStats:
    """What features need of the track table, as arrays indexed by track / artist id."""

    track_artist: np.ndarray
    track_rate: np.ndarray  # count / all training entries
    artist_rate: np.ndarray
    artist_ptr: np.ndarray  # tracks of artist a: artist_tracks[artist_ptr[a]:artist_ptr[a+1]], popular first
    artist_tracks: np.ndarray

    @property
    def n_tracks(self) -> int:
        return len(self.track_artist)

    @staticmethod
    def from_tracks(tracks: pd.DataFrame) -> "TrackStats":
        count = tracks["count"].to_numpy(np.float64)
        total = max(count.sum(), 1.0)
        artist = tracks["artist_id"].to_numpy(np.int64)
        n_art = int(artist.max()) + 1 if len(artist) else 0
        artist_count = np.bincount(artist, weights=count, minlength=n_art)
        order = np.argsort(artist, kind="stable")  # within an artist: track id order = popularity
        ptr = np.concatenate([[0], np.cumsum(np.bincount(artist, minlength=n_art))]).astype(np.int64)
        return TrackStats(artist, count / total, artist_count / total, ptr, order.astype(np.int64))


def _log_rate(x: np.ndarray) -> np.ndarray:
    return np.log1p(1000.0 * np.maximum(x, 0.0))


def generic_features(view: ChallengeView, stats: TrackStats, artist_playlists: pd.DataFrame) -> pd.DataFrame:
    """One row per challenge playlist: pid, category, title, target_artist and GENERIC."""
    n_seeds = view.n_seeds
    titles = [normalize(n) for n in view.names]
    name_to_artist = dict(zip(artist_playlists["name"], artist_playlists["artist_id"]))
    target = np.array([name_to_artist.get(t, -1) if t else -1 for t in titles], dtype=np.int64)
    row = np.repeat(np.arange(len(view)), n_seeds)
    known = view.seed_tracks >= 0
    pop = np.zeros(len(view.seed_tracks))
    pop[known] = _log_rate(stats.track_rate[view.seed_tracks[known]])
    n_known = np.bincount(row[known], minlength=len(view))
    mean_pop = np.bincount(row[known], weights=pop[known], minlength=len(view)) / np.maximum(n_known, 1)
    offset = np.arange(len(view.seed_pos)) - view.seed_ptr[row] if len(row) else np.zeros(0, np.int64)
    not_first_k = np.bincount(row, weights=(view.seed_pos != offset), minlength=len(view)) > 0
    return pd.DataFrame({
        "pid": view.pids, "category": view.categories, "title": titles, "target_artist": target,
        "n_seeds_log": np.log1p(n_seeds), "has_title": np.array([bool(t) for t in titles], dtype=float),
        "random_seeds": not_first_k.astype(float), "is_artist_playlist": (target >= 0).astype(float),
        "mean_seed_pop": mean_pop, "unseen_seed_share": (n_seeds - n_known) / np.maximum(n_seeds, 1),
    })


def _lookup(m: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """m[rows, cols] for many pairs at once (zeros where absent)."""
    m = m.tocsr()
    m.sum_duplicates()  # canonical: sorted, distinct column indices per row
    n_cols = m.shape[1]
    nz_rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    codes = nz_rows * n_cols + m.indices
    want = rows.astype(np.int64) * n_cols + cols
    i = np.searchsorted(codes, want)
    i = np.minimum(i, max(len(codes) - 1, 0))
    hit = (codes[i] == want) if len(codes) else np.zeros(len(want), bool)
    out = np.zeros(len(want), dtype=np.float64)
    out[hit] = m.data[i[hit]]
    return out


def _key_scores(view: ChallengeView, kind: str, lookup: CoocLookup, n_tracks: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """Playlist x track scores of one kind, and mean log key count per playlist."""
    rows, codes = playlist_keys(view, kind)
    if len(codes):
        pair = unique(rows.astype(np.int64) * (1 << 40) + np.unique(codes, return_inverse=True)[1])
        rows, inv = pair >> 40, pair & ((1 << 40) - 1)  # each key once per playlist
    else:
        inv = np.zeros(0, np.int64)
    uniq = unique(codes)
    m, key_counts = lookup.rows(kind, uniq, n_tracks)
    w = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, inv)), shape=(len(view), len(uniq)))
    s = (w @ m).tocsr()
    kc = np.log1p(key_counts[inv].astype(np.float64))
    mean_kc = np.bincount(rows, weights=kc, minlength=len(view)) / np.maximum(np.bincount(rows, minlength=len(view)), 1)
    return s, mean_kc


def build_samples(view: ChallengeView, generic: pd.DataFrame, stats: TrackStats, lookup: CoocLookup,
                  params: CandidateParams, *, negatives: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Candidates with FEATURES and label for every playlist of `view`.

    negatives: keep every positive and at most this many random negatives per playlist
    (for training: ranking within a playlist is unchanged, the data shrinks tenfold).
    Returns pid, track_id, FEATURES (float32), label (int8).
    """
    n_tracks = stats.n_tracks
    p_count = len(view)
    generic = generic.set_index("pid").loc[view.pids]
    scores, mean_kc = {}, None
    for kind in KINDS:
        scores[kind], kc = _key_scores(view, kind, lookup, n_tracks)
        if kind == "ngram_track":
            mean_kc = kc

    # Candidates: (playlist row, track) pairs from each source, as one code each.
    parts = []
    k_pop = min(params.popular, n_tracks)
    parts.append(np.arange(p_count, dtype=np.int64)[:, None] * n_tracks + np.arange(k_pop)[None, :])
    target = generic["target_artist"].to_numpy()
    for i in np.flatnonzero(target >= 0):
        a = target[i]
        t = stats.artist_tracks[stats.artist_ptr[a]:min(stats.artist_ptr[a + 1], stats.artist_ptr[a] + params.artist)]
        parts.append(i * n_tracks + t)
    for kind, k in (("total", params.cooc), ("ngram_track", params.ngram)):
        r, c, _ = top_per_row(scores[kind], k)
        parts.append(r * n_tracks + c)
    codes = unique(np.concatenate([p.ravel() for p in parts]))
    seed_rows = np.repeat(np.arange(p_count), view.n_seeds)
    seed_ok = view.seed_tracks >= 0
    codes = codes[~np.isin(codes, seed_rows[seed_ok] * n_tracks + view.seed_tracks[seed_ok])]
    rows, cand = codes // n_tracks, codes % n_tracks

    feats = {kind: np.log1p(_lookup(scores[kind], rows, cand)) for kind in KINDS}
    del scores
    cand_artist = stats.track_artist[cand]
    feats["track_pop"] = _log_rate(stats.track_rate[cand])
    feats["artist_pop"] = _log_rate(stats.artist_rate[cand_artist])
    t_row = target[rows]
    feats["is_target_artist"] = (cand_artist == t_row).astype(float)
    feats["other_is_target_artist"] = ((t_row >= 0) & (cand_artist != t_row)).astype(float)
    seed_art_ok = view.seed_artists >= 0
    n_seeds = np.maximum(view.n_seeds, 1)
    n_artists = len(stats.artist_rate)
    sa = sp.csr_matrix(((1.0 / n_seeds[seed_rows[seed_art_ok]]),
                        (seed_rows[seed_art_ok], np.minimum(view.seed_artists[seed_art_ok], n_artists - 1))),
                       shape=(p_count, max(n_artists, 1)))
    feats["seed_artist_share"] = _lookup(sa, rows, cand_artist)
    feats["mean_ngram_pop"] = mean_kc[rows]
    for g in GENERIC:
        feats[g] = generic[g].to_numpy(np.float64)[rows]

    hidden_rows = np.repeat(np.arange(p_count), np.diff(view.hidden_ptr))
    h_ok = view.hidden_tracks >= 0
    label = np.isin(codes, hidden_rows[h_ok] * n_tracks + view.hidden_tracks[h_ok])

    keep = slice(None)
    if negatives is not None:
        rng = np.random.default_rng(seed)
        prio = rng.random(len(codes))
        prio[label] = -1.0  # positives first, then random negatives
        order = np.lexsort((prio, rows))
        first = np.searchsorted(rows[order], rows[order], side="left")
        rank = np.arange(len(order)) - first
        n_pos = np.bincount(rows[label], minlength=p_count)
        keep = np.sort(order[rank < n_pos[rows[order]] + negatives])
    out = pd.DataFrame({"pid": view.pids[rows[keep]], "track_id": cand[keep].astype(np.int32)})
    for f in FEATURES:
        out[f] = feats[f][keep].astype(np.float32)
    out["label"] = label[keep].astype(np.int8)
    return out


def iter_samples(view: ChallengeView, generic: pd.DataFrame, stats: TrackStats, lookup: CoocLookup,
                 params: CandidateParams, *, negatives: int | None = None, seed: int = 0,
                 prefetch: int = 1000, batch: int = 250):
    """Yield (sub-view, samples) for batches of `batch` playlists.

    Every co-occurrence table is read once per `prefetch` playlists, keeping only their keys'
    rows; the score matrices of a batch stay small. Memory is bounded by the batch sizes,
    not by the number of playlists.
    """
    for big_start in range(0, len(view), prefetch):
        big = view.subset(np.arange(big_start, min(big_start + prefetch, len(view))))
        sub_lookup = lookup.prefetch({kind: playlist_keys(big, kind)[1] for kind in KINDS})
        for start in range(0, len(big), batch):
            small = big.subset(np.arange(start, min(start + batch, len(big))))
            yield small, build_samples(small, generic, stats, sub_lookup, params, negatives=negatives,
                                       seed=seed * 1_000_003 + big_start + start)

"""Challenge sets: the 10 official categories, sampled from held-out playlists.

A sampled challenge set is one long DataFrame, one row per seed or hidden entry:
    pid, category (0-9), name (None when the category hides it), num_tracks,
    is_seed (bool), pos, track_id, artist_id
Every playlist keeps at least 5 hidden rows, so no playlist disappears from the table.
Hidden answers are the playlist's distinct tracks that are not seeds (a seed cannot be
recommended, so counting it would only lower every score); a negative track_id is a track
unknown to the training statistics ("unseen"): it counts in |G| but can never be matched.

`ChallengeView` turns either form (sampled, or the official challenge_set.json) into CSR-like
arrays the feature and evaluation code works on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# (name given?, number of seeds, random seeds?) for the 10 categories, in the official order.
CATEGORIES: tuple[tuple[bool, int, bool], ...] = (
    (True, 0, False), (True, 1, False), (True, 5, False), (False, 5, False), (True, 10, False),
    (False, 10, False), (True, 25, False), (True, 25, True), (True, 100, False), (True, 100, True),
)
CATEGORY_NAMES: tuple[str, ...] = (
    "title only", "title + first 1", "title + first 5", "first 5, no title", "title + first 10",
    "first 10, no title", "title + first 25", "title + 25 random", "title + first 100",
    "title + 100 random",
)
MIN_HIDDEN = 5


def category_of(has_name: bool, n_seeds: int, random_seeds: bool) -> int:
    """Index of the official category, -1 if the combination is not one of the 10."""
    try:
        return CATEGORIES.index((has_name, n_seeds, random_seeds))
    except ValueError:
        return -1


def min_length(n_seeds: int) -> int:
    """Shortest playlist a category may use: >= 5 hidden tracks and >= 20% hidden."""
    return max(n_seeds + MIN_HIDDEN, int(np.ceil(n_seeds * 1.25)), 10 if n_seeds == 0 else 0)


def sample_challenge_set(part: pd.DataFrame, per_category: int, seed: int) -> pd.DataFrame:
    """Sample `per_category` playlists for each category from one renumbered part.

    part: long table pid, pos, track_id, artist_id, name (as `train_playlists` returns).
    Categories needing long playlists pick first, so short parts still fill every category.
    """
    rng = np.random.default_rng(seed)
    part = part.sort_values(["pid", "pos"], kind="stable")
    pids, starts, lengths = np.unique(part["pid"].to_numpy(), return_index=True, return_counts=True)
    taken = np.zeros(len(pids), dtype=bool)
    chosen: dict[int, np.ndarray] = {}
    for cat in sorted(range(len(CATEGORIES)), key=lambda c: -CATEGORIES[c][1]):
        eligible = np.flatnonzero(~taken & (lengths >= min_length(CATEGORIES[cat][1])))
        if len(eligible) < per_category:
            raise ValueError(
                f"challenge category '{CATEGORY_NAMES[cat]}' needs {per_category} playlists of "
                f">= {min_length(CATEGORIES[cat][1])} tracks but the held-out part has only "
                f"{len(eligible)} left; lower the challenge size or use more slices per part")
        pick = np.sort(rng.choice(eligible, per_category, replace=False))
        taken[pick] = True
        chosen[cat] = pick

    tracks = part["track_id"].to_numpy()
    artists = part["artist_id"].to_numpy()
    names = part["name"].to_numpy()
    cols: dict[str, list] = {k: [] for k in ("pid", "category", "name", "num_tracks", "is_seed", "pos",
                                             "track_id", "artist_id")}
    for cat in range(len(CATEGORIES)):
        has_name, k, random_seeds = CATEGORIES[cat]
        for i in chosen[cat]:
            s, n = starts[i], lengths[i]
            pos = np.sort(rng.choice(n, k, replace=False)) if random_seeds else np.arange(k)
            is_seed = np.zeros(n, dtype=bool)
            is_seed[pos] = True
            t = tracks[s:s + n]
            # Hidden = distinct tracks that are not seeds (first occurrence kept).
            _, first = np.unique(t, return_index=True)
            hidden = np.zeros(n, dtype=bool)
            hidden[first] = True
            hidden &= ~np.isin(t, t[is_seed])
            rows = np.flatnonzero(hidden | is_seed)
            m = len(rows)
            cols["pid"].append(np.full(m, pids[i]))
            cols["category"].append(np.full(m, cat, dtype=np.int8))
            cols["name"].append([names[s] if has_name else None] * m)
            cols["num_tracks"].append(np.full(m, n))
            cols["is_seed"].append(is_seed[rows])
            cols["pos"].append(rows.astype(np.int16))
            cols["track_id"].append(t[rows])
            cols["artist_id"].append(artists[s:s + n][rows])
    out = {k: np.concatenate(v) if k != "name" else [x for chunk in v for x in chunk] for k, v in cols.items()}
    return pd.DataFrame(out)


@dataclass
class ChallengeView:
    """A challenge set as arrays: one row per playlist, seeds and hidden tracks as CSR."""

    pids: np.ndarray
    categories: np.ndarray
    names: list  # raw titles, None when hidden
    num_tracks: np.ndarray
    seed_ptr: np.ndarray
    seed_tracks: np.ndarray  # in pos order; negative = unseen
    seed_artists: np.ndarray
    seed_pos: np.ndarray
    hidden_ptr: np.ndarray
    hidden_tracks: np.ndarray
    hidden_artists: np.ndarray

    def __len__(self) -> int:
        return len(self.pids)

    @property
    def n_seeds(self) -> np.ndarray:
        return np.diff(self.seed_ptr)

    def seeds(self, i: int) -> np.ndarray:
        return self.seed_tracks[self.seed_ptr[i]:self.seed_ptr[i + 1]]

    def hidden(self, i: int) -> np.ndarray:
        return self.hidden_tracks[self.hidden_ptr[i]:self.hidden_ptr[i + 1]]

    def subset(self, rows: np.ndarray) -> "ChallengeView":
        rows = np.asarray(rows, dtype=np.int64)

        def take(ptr, *arrays):
            lengths = np.diff(ptr)[rows]
            idx = np.concatenate([np.arange(ptr[r], ptr[r + 1]) for r in rows]) if len(rows) else np.zeros(0, np.int64)
            return (np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                    *[a[idx.astype(np.int64)] for a in arrays])

        sp, st, sa, spos = take(self.seed_ptr, self.seed_tracks, self.seed_artists, self.seed_pos)
        hp, ht, ha = take(self.hidden_ptr, self.hidden_tracks, self.hidden_artists)
        return ChallengeView(self.pids[rows], self.categories[rows], [self.names[r] for r in rows],
                             self.num_tracks[rows], sp, st, sa, spos, hp, ht, ha)

    @staticmethod
    def from_frame(df: pd.DataFrame) -> "ChallengeView":
        """From a sampled challenge set (long DataFrame, see module doc)."""
        df = df.sort_values(["pid", "pos"], kind="stable")
        pid = df["pid"].to_numpy()
        pids, first = np.unique(pid, return_index=True)
        row = np.searchsorted(pids, pid)
        seed = df["is_seed"].to_numpy(bool)

        def csr(mask):
            counts = np.bincount(row[mask], minlength=len(pids))
            return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

        return ChallengeView(
            pids=pids, categories=df["category"].to_numpy()[first].astype(np.int64),
            names=[n if isinstance(n, str) else None for n in df["name"].to_numpy()[first]], num_tracks=df["num_tracks"].to_numpy()[first],
            seed_ptr=csr(seed), seed_tracks=df["track_id"].to_numpy()[seed].astype(np.int64),
            seed_artists=df["artist_id"].to_numpy()[seed].astype(np.int64),
            seed_pos=df["pos"].to_numpy()[seed].astype(np.int64),
            hidden_ptr=csr(~seed), hidden_tracks=df["track_id"].to_numpy()[~seed].astype(np.int64),
            hidden_artists=df["artist_id"].to_numpy()[~seed].astype(np.int64))

    @staticmethod
    def from_official(playlists: pd.DataFrame, seeds: pd.DataFrame, tracks: pd.DataFrame) -> "ChallengeView":
        """From `mpd_io.read_challenge_set` output, seeds renumbered with the track table."""
        from spotify_mpc.standardize import lookup_ids

        pids = playlists["pid"].to_numpy(np.int64)
        seeds = seeds.sort_values(["pid", "pos"], kind="stable")
        row = np.searchsorted(pids, seeds["pid"].to_numpy()) if len(seeds) else np.zeros(0, np.int64)
        order = np.argsort(pids)
        if not np.array_equal(order, np.arange(len(pids))):
            playlists = playlists.iloc[order].reset_index(drop=True)
            pids = pids[order]
            row = np.searchsorted(pids, seeds["pid"].to_numpy())
        counts = np.bincount(row, minlength=len(pids))
        track_id, artist_id = lookup_ids(seeds["track_uri"], seeds["artist_uri"], tracks)
        empty = np.zeros(0, dtype=np.int64)
        return ChallengeView(
            pids=pids, categories=playlists["category"].to_numpy(np.int64), names=list(playlists["name"]),
            num_tracks=playlists["num_tracks"].to_numpy(np.int64),
            seed_ptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            seed_tracks=track_id, seed_artists=artist_id, seed_pos=seeds["pos"].to_numpy(np.int64),
            hidden_ptr=np.zeros(len(pids) + 1, dtype=np.int64), hidden_tracks=empty, hidden_artists=empty)

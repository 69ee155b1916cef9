"""Artist playlists ("Drake", "taylor swift"), detected offline from the data itself.

A title names an artist playlist when it equals a popular artist's normalized name and is
not a common phrase. The original asked a downloaded dictionary (WordNet) what a common
phrase is; here the training playlists answer it, with no download:
- a name used as a title often enough is judged by what those playlists contain: if the
  artist's share of their tracks is low ("summer" playlists are not about the artist
  Summer), it is a common phrase;
- a name rarely used as a whole title is a common phrase if it is a frequent word inside
  other titles ("love" in "love songs", "my love", ...).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np
import pandas as pd

from spotify_mpc.standardize import artist_table
from spotify_mpc.text import normalize


def detect_artist_playlists(tracks: pd.DataFrame, parts: Iterable[pd.DataFrame], *, top_artists: int = 20_000,
                            min_title_count: int = 3, min_share: float = 0.2,
                            common_word_titles: int = 8) -> pd.DataFrame:
    """Accepted artist-playlist titles: name, artist_id, artist_name, n_playlists, artist_share.

    parts: renumbered training parts (pid, pos, track_id, artist_id, name), read one at a time.
    """
    artists = artist_table(tracks).head(top_artists)
    norm = pd.Series([normalize(n) for n in artists["artist_name"]], index=artists.index)
    norm = norm[norm.str.len() >= 2]
    # Most popular artist wins a shared name (artist ids are popularity ranks).
    name_to_artist = {n: int(a) for a, n in norm.iloc[::-1].items()}

    n_playlists: Counter = Counter()
    share_sum: Counter = Counter()
    word_titles: dict[str, set] = {}
    for part in parts:
        pid = part["pid"].to_numpy()
        uniq, first, lengths = np.unique(pid, return_index=True, return_counts=True)
        titles = [normalize(t) for t in part["name"].to_numpy()[first]]
        for t in set(titles):
            words = t.split()
            if len(words) > 1:
                for w in words:
                    word_titles.setdefault(w, set()).add(t)
        target = np.array([name_to_artist.get(t, -1) for t in titles], dtype=np.int64)
        row = np.repeat(np.arange(len(uniq)), lengths)
        hit = (part["artist_id"].to_numpy() == target[row]) & (target[row] >= 0)
        share = np.bincount(row[hit], minlength=len(uniq)) / lengths
        for i in np.flatnonzero(target >= 0):
            n_playlists[titles[i]] += 1
            share_sum[titles[i]] += float(share[i])

    rows = []
    for name, artist in name_to_artist.items():
        n = n_playlists.get(name, 0)
        mean_share = share_sum.get(name, 0.0) / n if n else float("nan")
        if n >= min_title_count:
            common = mean_share < min_share  # the title's playlists are not about the artist
        else:
            common = len(word_titles.get(name, ())) >= common_word_titles  # an everyday word
        if not common:
            rows.append((name, artist, artists.at[artist, "artist_name"], n, mean_share))
    out = pd.DataFrame(rows, columns=["name", "artist_id", "artist_name", "n_playlists", "artist_share"])
    return out.sort_values("artist_id").reset_index(drop=True)

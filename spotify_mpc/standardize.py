"""Parts, the global track table, and integer ids.

- `part_playlists`: the slices of one part -> what later steps need of each playlist entry.
- `part_track_table`: the slices of one part -> one row per distinct track, with counts.
- `reduce_track_tables`: many part tables -> one global table, added up one part at a time
  (memory is bounded by the number of distinct tracks, not the number of parts). Rows are
  sorted by popularity, so a track's integer id is its popularity rank and "the k most
  popular tracks" is simply ids 0..k-1.
- `renumber`: URIs -> integer ids. A track or artist missing from the table gets a
  negative id, distinct per distinct URI within the part, so it still counts (as unseen).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

PLAYLIST_COLUMNS = ["pid", "name", "modified_at", "pos", "track_uri", "artist_uri"]
TRACK_META = ["track_name", "artist_uri", "artist_name", "album_uri", "album_name", "duration_ms"]


def part_playlists(slices: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Long table of a part: pid, name, modified_at, pos, track_uri, artist_uri (pid, pos order)."""
    frames = [s[PLAYLIST_COLUMNS] for s in slices]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PLAYLIST_COLUMNS)
    df = df.sort_values(["pid", "pos"], kind="stable").reset_index(drop=True)
    df["name"] = df["name"].astype("category")  # one title per playlist, repeated per entry
    return df


def part_track_table(slices: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Distinct tracks of a part: track_uri, metadata, count (entries), mean_modified_at."""
    tables = []
    for s in slices:
        g = s.groupby("track_uri", sort=False)
        t = g[TRACK_META].first()
        t["count"] = g.size().astype(np.int64)
        t["mean_modified_at"] = g["modified_at"].mean()
        tables.append(t.reset_index())
    return _combine(tables)


def _combine(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Sum counts of equal URIs; mean_modified_at weighted by counts; first metadata wins."""
    tables = [t for t in tables if len(t)]
    if not tables:
        return pd.DataFrame(columns=["track_uri", *TRACK_META, "count", "mean_modified_at"])
    if len(tables) == 1:
        return tables[0].reset_index(drop=True)
    df = pd.concat(tables, ignore_index=True)
    df["_w"] = df["mean_modified_at"] * df["count"]
    g = df.groupby("track_uri", sort=False)
    out = g[TRACK_META].first()
    out["count"] = g["count"].sum()
    out["mean_modified_at"] = g["_w"].sum() / out["count"]
    return out.reset_index()


def reduce_track_tables(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Global track table; row number = track id (0 = most popular).

    `tables` may be a lazy iterable: only the running total and one part are in memory.
    Adds artist_id (artists ranked by their total count) and artist_count.
    """
    acc: pd.DataFrame | None = None
    for t in tables:
        acc = t.copy() if acc is None else _combine([acc, t])
    if acc is None:
        raise ValueError("no part track tables to reduce; the statistics parts are empty")
    acc = acc.sort_values(["count", "track_uri"], ascending=[False, True], kind="stable").reset_index(drop=True)
    artist_count = acc.groupby("artist_uri", sort=False)["count"].sum()
    ranked = artist_count.reset_index().sort_values(["count", "artist_uri"], ascending=[False, True])
    artist_id = pd.Series(np.arange(len(ranked), dtype=np.int32), index=ranked["artist_uri"].to_numpy())
    acc["artist_id"] = artist_id.reindex(acc["artist_uri"]).to_numpy()
    acc["artist_count"] = artist_count.reindex(acc["artist_uri"]).to_numpy().astype(np.int64)
    acc["count"] = acc["count"].astype(np.int64)
    return acc


def artist_table(tracks: pd.DataFrame) -> pd.DataFrame:
    """One row per artist, index = artist_id: artist_uri, artist_name, artist_count."""
    a = tracks.drop_duplicates("artist_id")[["artist_id", "artist_uri", "artist_name", "artist_count"]]
    return a.set_index("artist_id").sort_index()


def _strings(values) -> pa.ChunkedArray:
    """Strings as Arrow large_string: a pandas str column without a copy, anything else converted."""
    arr = pa.chunked_array([pa.array(values)]) if not isinstance(values, pa.ChunkedArray) else values
    return arr.cast(pa.large_string())


def _ids(values, universe) -> np.ndarray:
    """Position of each value among the distinct strings `universe` (what
    pd.Index(universe).get_indexer(values) returns), found by Arrow's hash lookup: about 4x
    faster than a pandas Index on a part's 600k URIs. Unknown values get negative ids."""
    ids = pc.index_in(_strings(values), value_set=_strings(universe).combine_chunks())
    ids = ids.fill_null(-1).to_numpy().astype(np.int64)
    missing = ids < 0
    if missing.any():
        # Distinct negative ids for distinct unknown URIs: still countable, never matchable.
        codes, _ = pd.factorize(np.asarray(values, dtype=object)[missing])
        ids[missing] = -1 - codes
    return ids


def lookup_ids(track_uris, artist_uris, tracks: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(track ids, artist ids) for URIs (arrays or str Series); unknown ones negative (see module doc)."""
    track_id = _ids(track_uris, tracks["track_uri"])
    # artist ids follow artist_table's order, which is artist_id order
    artist_id = _ids(artist_uris, artist_table(tracks)["artist_uri"])
    return track_id, artist_id


def renumber(playlists: pd.DataFrame, tracks: pd.DataFrame) -> pd.DataFrame:
    """A part's long table with integer ids: pid, pos, track_id, artist_id, name, modified_at."""
    track_id, artist_id = lookup_ids(playlists["track_uri"], playlists["artist_uri"], tracks)
    return pd.DataFrame({
        "pid": playlists["pid"].to_numpy(np.int64),
        "pos": playlists["pos"].to_numpy(np.int16),
        "track_id": track_id.astype(np.int32),
        "artist_id": artist_id.astype(np.int32),
        "name": playlists["name"],
        "modified_at": playlists["modified_at"].to_numpy(np.int64),
    })

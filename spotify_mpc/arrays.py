"""Array helpers shared by the chain's hot paths.

`unique`: numpy >= 2.3 finds the distinct values of a plain `np.unique(a)` (no return_*
option) with a hash table and then sorts them; on a million int64 codes that takes about
1.3 s against 0.01 s for a sort. Candidate codes, co-occurrence keys and pids are exactly
such arrays, so the chain sorts instead. Same values, same dtype, same order.
"""

from __future__ import annotations

import numpy as np


def unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an integer (or bool) array, as np.unique(values) returns them."""
    a = np.sort(np.asarray(values).ravel())
    if a.dtype.kind not in "iub":
        raise TypeError(f"unique() takes integer arrays (NaN handling differs from np.unique); got {a.dtype}")
    if len(a) < 2:
        return a
    keep = np.empty(len(a), dtype=bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


# Per-row ("ragged") helpers: a row's values are kept apart by coding (row, value) as one
# int64, row * span + (value - lo), so one sort or search covers every row at once instead
# of a numpy call per playlist (5,000-10,000 playlists: the calls' overhead was the cost).


def row_codes(rows: np.ndarray, values: np.ndarray, lo: int, span: int) -> np.ndarray:
    """(row, value) as one sortable int64; every value must lie in [lo, lo + span)."""
    return np.asarray(rows, np.int64) * span + (np.asarray(values, np.int64) - lo)


def code_space(n_rows: int, *values: np.ndarray) -> tuple[int, int]:
    """lo, span covering all `values`, checked so that row_codes cannot overflow int64."""
    nonempty = [np.asarray(v) for v in values if np.size(v)]
    if not nonempty:
        return 0, 1
    lo = min(int(v.min()) for v in nonempty)
    span = max(int(v.max()) for v in nonempty) - lo + 1
    if span * max(n_rows, 1) >= 2**62:
        raise OverflowError(f"{n_rows} rows x value span {span} do not fit in int64 codes")
    return lo, span


def first_occurrence(codes: np.ndarray) -> np.ndarray:
    """Mask of each code's first occurrence (in array order), like np.unique's return_index."""
    codes = np.asarray(codes)
    mask = np.ones(len(codes), dtype=bool)
    if len(codes) < 2:
        return mask
    s = np.sort(codes)
    if (s[1:] != s[:-1]).all():  # the usual case, no repeat: a plain sort decides it
        return mask
    order = np.argsort(codes, kind="stable")  # equal codes keep array order: the first one leads
    s = codes[order]
    mask[order[1:]] = s[1:] != s[:-1]
    return mask


def isin_sorted(values: np.ndarray, sorted_ref: np.ndarray) -> np.ndarray:
    """np.isin(values, sorted_ref) for an already sorted reference (a binary search each)."""
    values = np.asarray(values)
    if len(sorted_ref) == 0:
        return np.zeros(values.shape, dtype=bool)
    pos = np.searchsorted(sorted_ref, values)
    np.minimum(pos, len(sorted_ref) - 1, out=pos)
    return sorted_ref[pos] == values


def rank_in_row(rows: np.ndarray, n_rows: int) -> np.ndarray:
    """0-based position of each element among its row's elements; rows must be non-decreasing."""
    rows = np.asarray(rows, np.int64)
    starts = np.searchsorted(rows, np.arange(n_rows))
    return np.arange(len(rows), dtype=np.int64) - starts[rows] if len(rows) else np.zeros(0, np.int64)


def tie_ranks(values: np.ndarray) -> np.ndarray:
    """Per value, how many values are strictly smaller (equal values share a rank; -0.0 == 0.0).

    Replaces a float sort key by an int64 one of the same order, which packs with other int
    keys into one int64 to sort once (see submission.rank_candidates). NaN has no order: refused.
    """
    values = np.asarray(values)
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise ValueError("tie_ranks() takes no NaN")
    n = len(values)
    order = np.argsort(values)
    s = values[order]
    new = np.ones(n, dtype=bool)
    np.not_equal(s[1:], s[:-1], out=new[1:])
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.maximum.accumulate(np.where(new, np.arange(n, dtype=np.int64), 0)) if n else ranks
    return ranks

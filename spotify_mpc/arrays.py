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

"""Stable, vectorized hashing: the same input gives the same 63-bit number in every process.

Python's `hash()` is salted per process, so it cannot name a key that one task writes and
another reads. splitmix64 (for integers) and BLAKE2b (for strings) are stable everywhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

_MASK63 = np.uint64(0x7FFFFFFFFFFFFFFF)


def splitmix64(x: np.ndarray | int) -> np.ndarray:
    """The splitmix64 finalizer, elementwise on uint64 (wrapping arithmetic is intended)."""
    z = np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def combine(*columns: np.ndarray | int) -> np.ndarray:
    """One 63-bit int64 code for each row of several integer columns (order matters)."""
    h = np.uint64(0x51ED270B27A5D1F3)
    for col in columns:
        with np.errstate(over="ignore"):
            h = splitmix64(h ^ np.asarray(col).astype(np.uint64))
    return (np.asarray(h, dtype=np.uint64) & _MASK63).astype(np.int64)


def hash_strings(values: Iterable[str]) -> np.ndarray:
    """63-bit int64 code of each string (BLAKE2b, 8 bytes)."""
    out = [int.from_bytes(hashlib.blake2b(v.encode("utf-8"), digest_size=8).digest(), "little")
           & 0x7FFFFFFFFFFFFFFF for v in values]
    return np.asarray(out, dtype=np.int64)


def shard_of(codes: np.ndarray, n_shards: int) -> np.ndarray:
    """Shard of each key code; mixing first so consecutive track ids spread evenly."""
    return (splitmix64(np.asarray(codes).astype(np.uint64)) % np.uint64(n_shards)).astype(np.int64)

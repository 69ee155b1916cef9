"""Playlist titles as keys: normalization and character n-grams.

Titles are noisy ("Country!!", "COUNTRY", "country music 🤠"); normalizing them to lowercase
words makes equal intents equal, and character 2/3-grams let "chill vibes" and "chillin"
share evidence. The whole normalized title is one more key, so exact matches count most.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

import numpy as np

from spotify_mpc.hashing import hash_strings

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalize(title: str | None) -> str:
    """Lowercase letters and digits separated by single spaces ('Rap!! 🔥' -> 'rap')."""
    if not isinstance(title, str) or not title:  # None / NaN (hidden title) -> no title
        return ""
    text = unicodedata.normalize("NFKC", title).lower()
    return _NON_WORD.sub(" ", text).strip()


def ngrams(normalized: str) -> list[str]:
    """Distinct keys of a normalized title: '=<title>' plus its character 2- and 3-grams.

    The title is padded with spaces so word starts and ends are grams of their own.
    """
    if not normalized:
        return []
    padded = f" {normalized} "
    grams = {padded[i:i + n] for n in (2, 3) for i in range(len(padded) - n + 1)}
    grams.discard("  ")
    return ["=" + normalized, *sorted(grams)]


def ngram_codes_by_title(titles: Iterable[str | None]) -> dict[str, np.ndarray]:
    """normalized title -> int64 codes of its n-grams, computed once per distinct title."""
    out: dict[str, np.ndarray] = {}
    for title in titles:
        norm = normalize(title)
        if norm not in out:
            out[norm] = hash_strings(ngrams(norm))
    return out


def title_ngram_pairs(titles: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """(row index, n-gram code) for every n-gram of every title in the list."""
    norms = [normalize(t) for t in titles]
    by_title = ngram_codes_by_title(set(norms))
    lengths = np.fromiter((len(by_title[n]) for n in norms), dtype=np.int64, count=len(norms))
    codes = np.concatenate([by_title[n] for n in norms]) if len(norms) else np.zeros(0, np.int64)
    return np.repeat(np.arange(len(norms)), lengths), codes.astype(np.int64)

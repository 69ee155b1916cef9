"""Upstream partitions handed to a task one at a time, so a reduction over many parts never
holds them all in memory: `parts["3"]()` loads part 3 when the body asks for it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any


class LazyPartitions(Mapping[str, Callable[[], Any]]):
    """Partition key -> zero-argument loader, in the upstream's partition order."""

    def __init__(self, loaders: Mapping[str, Callable[[], Any]]):
        self._loaders = dict(loaders)

    def __getitem__(self, key: str) -> Callable[[], Any]:
        return self._loaders[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)

    def load(self, key: str) -> Any:
        return self._loaders[key]()

    def iter_loaded(self) -> Iterator[tuple[str, Any]]:
        """(key, object) pairs, loading each only when the loop reaches it."""
        for key, loader in self._loaders.items():
            yield key, loader()

    def __repr__(self) -> str:
        return f"LazyPartitions({list(self._loaders)!r})"

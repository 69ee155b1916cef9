"""Upstream partitions handed to a task one at a time, so a reduction over many parts never
holds them all in memory: `parts["3"]()` loads part 3 when the body asks for it.

Loaders take read options of the stored format, so a task can read a slice of a large
partition without the rest: for parquet `columns=[...]` and `filters=[("shard", "=", 3)]`
(pyarrow's filters; row groups whose statistics exclude the filter are never decoded).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any


class LazyPartitions(Mapping[str, Callable[..., Any]]):
    """Partition key -> loader (`loader(**read_options)`), in the upstream's partition order."""

    def __init__(self, loaders: Mapping[str, Callable[..., Any]]):
        self._loaders = dict(loaders)

    def __getitem__(self, key: str) -> Callable[..., Any]:
        return self._loaders[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)

    def load(self, key: str, **read_options: Any) -> Any:
        return self._loaders[key](**read_options)

    def iter_loaded(self, **read_options: Any) -> Iterator[tuple[str, Any]]:
        """(key, object) pairs, loading each only when the loop reaches it."""
        for key, loader in self._loaders.items():
            yield key, loader(**read_options)

    def __repr__(self) -> str:
        return f"LazyPartitions({list(self._loaders)!r})"

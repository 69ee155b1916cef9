"""How a transformation is split into tasks: kube-transform's orchestration function, as
Dagster partitions.

- `FilePartitions`: one task per input file under the data dir ("one task per file"). Keys are
  discovered from the files and registered as dynamic partitions, by `sync` (CLI, demo) or by
  a sensor when new files land; removing a file never deletes history.
- `ChunkedPartitions`: one task per group of k upstream partitions (10 MPD slices -> one part),
  with `ChunkedPartitionMapping` telling Dagster which upstream keys each chunk reads.
- Anything else is a plain Dagster PartitionsDefinition (static keys, multi-dimensional, ...).
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

import dagster as dg
from dagster import partition_loading_context
from upath import UPath

from ktx_dagster.compat import PartitionsSubset, UpstreamPartitionsResult

_INVALID_KEY_CHARS = re.compile(r"[\x00-\x1f,\[\]|]")

# Keys per `add_dynamic_partitions` call on SQLite. Dagster's SQL storage first selects the
# keys that exist with one `IN (...)` of every key given: past SQLite's limit on bound variables
# (32766 since SQLite 3.32, as on macOS; 999 before) that fails with "too many SQL variables"
# (dagster-io/dagster#16260, ~36,000 partitions). 500 stays under either limit; 100,000 keys are
# then 200 statements, which cost little beside the keys themselves (bench/partition_scale.py).
REGISTER_BATCH = 500
# PostgreSQL's add is one INSERT .. ON CONFLICT DO NOTHING, no `IN (...)`, but each call opens
# a connection of its own (~0.17 s here): fewer, larger batches.
SERVER_REGISTER_BATCH = 10_000

# Partitions per source past which a SQLite instance is the wall (docs/scale.md): `ktx sync`
# and the file sensors say so, with how to move to PostgreSQL. Below the 32,766 bound variables
# of a stock SQLite, which Dagster's own queries that pass every key at once still hit; what this
# project does is batched and measured fine to 100,000. KTX_SQLITE_PARTITIONS_WARN changes it.
SQLITE_PARTITIONS_WARN = 20_000
POSTGRES_CONFIG = "deploy/minikube/dagster.yaml"


def register_partitions(instance: dg.DagsterInstance, name: str, keys: Sequence[str], batch: int | None = None) -> None:
    """`instance.add_dynamic_partitions(name, keys)` in batches: `REGISTER_BATCH` keys on SQLite,
    `SERVER_REGISTER_BATCH` on a database server."""
    if not keys:
        return
    size = batch or (REGISTER_BATCH if instance_is_sqlite(instance) else SERVER_REGISTER_BATCH)
    for start in range(0, len(keys), size):
        instance.add_dynamic_partitions(name, keys[start : start + size])


def instance_is_sqlite(instance: dg.DagsterInstance) -> bool:
    """Whether the instance keeps its partitions in SQLite (the local default, Dagster's own
    default, a test instance), from the SQL dialect of its event log storage's connection."""
    connect = getattr(instance.event_log_storage, "index_connection", None)
    if connect is None:  # not a SQL storage: nothing to say
        return False
    with connect() as conn:
        return conn.dialect.name == "sqlite"


def sqlite_scale_warning(instance: dg.DagsterInstance, name: str, count: int) -> str | None:
    """What to tell the user when `count` partitions of `name` are past what SQLite serves well."""
    raw = os.environ.get("KTX_SQLITE_PARTITIONS_WARN", "")
    limit = int(raw) if raw.isdigit() else SQLITE_PARTITIONS_WARN
    if count <= limit or not instance_is_sqlite(instance):
        return None
    return (
        f"partitions {name!r}: {count:,} on a SQLite instance, more than the {limit:,} it is kept to: "
        "Dagster's queries that pass every key at once fail past 32,766 keys on a stock SQLite "
        "(dagster-io/dagster#16260) and its UI's partition views slow down past tens of thousands "
        "(docs/scale.md). Switch to PostgreSQL: copy the instance config "
        f"{POSTGRES_CONFIG} into DAGSTER_HOME as dagster.yaml and set DAGSTER_PG_HOST, DAGSTER_PG_PORT, "
        "DAGSTER_PG_USER, DAGSTER_PG_PASSWORD, DAGSTER_PG_DB (and KTX_COMPUTE_LOGS_DIR for step logs); "
        "then run `ktx sync` again to register the partitions there"
    )


class Registered(NamedTuple):
    """What a `register` did: the keys it added and how many there are now."""

    new: list[str]
    total: int


_DIGIT_RUNS = re.compile(r"(\d+)")


def natural_key(key: str) -> list:
    """Sort 'part_2' before 'part_10' and '1000-1999' after '0-999'."""
    # Odd tokens are the digit runs: comparing int with int and str with str, never int with str
    # (str.isdigit() would also take '²', which int() refuses).
    return [int(tok) if i % 2 else tok for i, tok in enumerate(_DIGIT_RUNS.split(key))]


def natural_sorted(keys) -> list[str]:
    return sorted(keys, key=natural_key)


def _list_names(folder: UPath) -> list[str]:
    # A local folder through os.scandir: UPath's iterdir builds a path object per file, 2.6 s
    # for 100,000 files where scandir takes 0.11 s (docs/scale.md). Other filesystems (S3)
    # list through UPath.
    if folder.protocol in ("", "file", "local"):
        with os.scandir(folder.path) as entries:
            return [entry.name for entry in entries]
    return [p.name for p in folder.iterdir()]


@dataclass(frozen=True)
class FilePartitions:
    """One partition per file in `<data root>/<directory>` matching `pattern`.

    key="stem" names a partition by the file name without its extension (part_1.txt -> part_1);
    key="match" by the text the `*` in the pattern matched (mpd.slice.0-999.json -> 0-999).
    inputs_hint: how to write the inputs (e.g. a command), told when no file matches.
    """

    name: str
    directory: str
    pattern: str
    key: Literal["stem", "match"] = "stem"
    inputs_hint: str = ""

    def __post_init__(self) -> None:
        if self.pattern.count("*") != 1 or "/" in self.pattern:
            raise ValueError(
                f"FilePartitions {self.name!r}: pattern {self.pattern!r} must be a file name "
                "with exactly one '*', e.g. 'part_*.txt'"
            )
        if self.key == "stem" and "." not in self.pattern.split("*")[-1]:
            raise ValueError(
                f"FilePartitions {self.name!r}: key='stem' needs a fixed extension after the "
                f"'*' in {self.pattern!r}"
            )

    @property
    def definition(self) -> dg.DynamicPartitionsDefinition:
        return dg.DynamicPartitionsDefinition(name=self.name)

    def key_for(self, filename: str) -> str:
        if self.key == "stem":
            return filename.rsplit(".", 1)[0]
        prefix, suffix = self.pattern.split("*")
        return filename[len(prefix) : len(filename) - len(suffix)]

    def filename_for(self, key: str) -> str:
        if self.key == "stem":
            return key + "." + self.pattern.rsplit(".", 1)[1]
        return self.pattern.replace("*", key)

    def path_for(self, root: UPath, key: str) -> UPath:
        return root / self.directory / self.filename_for(key)

    def discover(self, root: UPath) -> list[str]:
        """Keys of the files present now, naturally sorted. Invalid names raise, naming the file."""
        return natural_sorted(self.present(root))

    def present(self, root: UPath) -> list[str]:
        """`discover` in no particular order: a sensor's quiet tick needs no sort of every key."""
        folder = root / self.directory
        try:
            names = [name for name in _list_names(folder) if fnmatch.fnmatchcase(name, self.pattern)]
        except FileNotFoundError:
            return []
        keys = []
        for name in names:
            key = self.key_for(name)
            if not key or _INVALID_KEY_CHARS.search(key):
                raise ValueError(
                    f"{folder / name}: the partition key {key!r} derived from this file name is "
                    "empty or holds a character Dagster keys cannot (',', '[', ']', '|', control "
                    "characters); rename the file"
                )
            keys.append(key)
        return keys

    def no_inputs_message(self, root: UPath) -> str:
        """What a user who forgot to write the inputs is told: the folder and pattern searched,
        what the folder holds instead, and how to fix it."""
        folder = root / self.directory
        try:
            others = sorted(p.name for p in folder.iterdir())
        except FileNotFoundError:
            found = "the folder does not exist"
        else:
            found = (f"the folder holds {len(others)} other file(s): {', '.join(others[:3])}"
                     + (", ..." if len(others) > 3 else "")) if others else "the folder is empty"
        how = self.inputs_hint or f"write the input files there, named like {self.pattern!r}"
        return (f"no input files for partitions {self.name!r}: nothing matches {self.pattern!r} in {folder} "
                f"({found}). Fix: {how}, or point the data dir (data_dir: / KTX_DATA_DIR) at the root that "
                "holds them; then run again")

    def to_metadata(self) -> dict[str, str]:
        """How an asset records its partitions' source (`ktx/partitions` metadata)."""
        return {"kind": "files", "name": self.name, "directory": self.directory, "pattern": self.pattern, "key": self.key,
                **({"inputs_hint": self.inputs_hint} if self.inputs_hint else {})}

    def sync(self, instance: dg.DagsterInstance, root: UPath) -> list[str]:
        """Register keys of new files as partitions; returns the new keys. Never deletes."""
        return self.register(instance, root).new

    def register(self, instance: dg.DagsterInstance, root: UPath) -> Registered:
        """`sync`, and the number of partitions after it: the registered keys are read once."""
        existing = set(instance.get_dynamic_partitions(self.name))
        new = natural_sorted(k for k in self.present(root) if k not in existing)  # sort the new ones only
        register_partitions(instance, self.name, new)
        return Registered(new, len(existing) + len(new))


class ChunkedPartitionMapping(
    dg.PartitionMapping, NamedTuple("_ChunkedPartitionMapping", [("chunk_size", int)])
):
    """Downstream key "i" reads upstream keys[i*k:(i+1)*k] of the naturally sorted upstream keys.

    The fan-in of kube-transform's "10 slices -> one part". Dagster's built-in mappings cannot
    express it for dynamic keys; the host process (UI, backfill planner) does not see custom
    mappings and treats the edge as "all upstream partitions", which only orders backfills more
    conservatively. Execution uses this mapping.
    """

    def _upstream_keys(self, upstream_def: dg.PartitionsDefinition) -> list[str]:
        return natural_sorted(upstream_def.get_partition_keys())

    def validate_partition_mapping(self, upstream_partitions_def, downstream_partitions_def):
        if self.chunk_size < 1:
            raise ValueError(f"ChunkedPartitionMapping: chunk_size must be >= 1, got {self.chunk_size}")

    def get_upstream_mapped_partitions_result_for_partitions(
        self,
        downstream_partitions_subset: PartitionsSubset | None,
        downstream_partitions_def: dg.PartitionsDefinition | None,
        upstream_partitions_def: dg.PartitionsDefinition,
        current_time: datetime | None = None,
        dynamic_partitions_store: Any = None,
    ) -> UpstreamPartitionsResult:
        with partition_loading_context(current_time, dynamic_partitions_store):
            upstream = self._upstream_keys(upstream_partitions_def)
            wanted: list[str] = []
            missing: list[str] = []
            for key in downstream_partitions_subset.get_partition_keys() if downstream_partitions_subset else []:
                if not key.isdigit():
                    missing.append(key)
                    continue
                i = int(key)
                chunk = upstream[i * self.chunk_size : (i + 1) * self.chunk_size]
                wanted += chunk
            return UpstreamPartitionsResult(
                partitions_subset=upstream_partitions_def.subset_with_partition_keys(wanted),
                required_but_nonexistent_subset=upstream_partitions_def.empty_subset(),
            )

    def get_downstream_partitions_for_partitions(
        self,
        upstream_partitions_subset: PartitionsSubset,
        upstream_partitions_def: dg.PartitionsDefinition,
        downstream_partitions_def: dg.PartitionsDefinition,
        current_time: datetime | None = None,
        dynamic_partitions_store: Any = None,
    ) -> PartitionsSubset:
        with partition_loading_context(current_time, dynamic_partitions_store):
            index = {k: i for i, k in enumerate(self._upstream_keys(upstream_partitions_def))}
            downstream = {str(index[k] // self.chunk_size) for k in upstream_partitions_subset.get_partition_keys() if k in index}
            existing = set(downstream_partitions_def.get_partition_keys())
            return downstream_partitions_def.subset_with_partition_keys(natural_sorted(downstream & existing))

    @property
    def description(self) -> str:
        return f"Downstream partition i reads upstream partitions i*{self.chunk_size} .. (i+1)*{self.chunk_size}-1 in natural key order."


@dataclass(frozen=True)
class ChunkedPartitions:
    """One partition per `size` consecutive partitions of `upstream` (keys "0", "1", ...)."""

    name: str
    upstream: FilePartitions
    size: int

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"ChunkedPartitions {self.name!r}: size must be >= 1, got {self.size}")

    @property
    def definition(self) -> dg.DynamicPartitionsDefinition:
        return dg.DynamicPartitionsDefinition(name=self.name)

    @property
    def mapping(self) -> ChunkedPartitionMapping:
        return ChunkedPartitionMapping(self.size)

    def to_metadata(self) -> dict[str, Any]:
        return {"kind": "chunks", "name": self.name, "size": self.size, "upstream": self.upstream.to_metadata()}

    def no_inputs_message(self, root: UPath) -> str:
        return self.upstream.no_inputs_message(root)

    def keys_for(self, upstream_keys: Sequence[str]) -> list[str]:
        return self.keys_for_count(len(upstream_keys))

    def keys_for_count(self, count: int) -> list[str]:
        return [str(i) for i in range(math.ceil(count / self.size))]

    def sync(self, instance: dg.DagsterInstance, root: UPath) -> list[str]:
        """Register the upstream's new files, then the chunks they make; returns new chunk keys."""
        return self.register(instance, root).new

    def register(self, instance: dg.DagsterInstance, root: UPath) -> Registered:
        # The chunks depend only on how many upstream keys there are, not on the keys.
        upstream = self.upstream.register(instance, root)
        existing = set(instance.get_dynamic_partitions(self.name))
        new = [k for k in self.keys_for_count(upstream.total) if k not in existing]
        register_partitions(instance, self.name, new)
        return Registered(new, len(existing) + len(new))


def partition_keys_for(asset: dg.AssetsDefinition, instance: dg.DagsterInstance) -> list[str | None]:
    """Every partition key of an asset now (dynamic ones from the instance); [None] if unpartitioned."""
    if asset.partitions_def is None:
        return [None]
    with partition_loading_context(dynamic_partitions_store=instance):
        return list(asset.partitions_def.get_partition_keys())


PartitionSource = FilePartitions | ChunkedPartitions
SOURCE_METADATA_KEY = "ktx/partitions"  # asset metadata: the FilePartitions / ChunkedPartitions


def source_from_metadata(data: Any) -> PartitionSource:
    """The FilePartitions / ChunkedPartitions an asset's `ktx/partitions` metadata describes."""
    data = getattr(data, "value", data)  # a JsonMetadataValue once Dagster normalized it
    if data.get("kind") == "files":
        return FilePartitions(name=data["name"], directory=data["directory"], pattern=data["pattern"], key=data["key"],
                              inputs_hint=data.get("inputs_hint", ""))
    if data.get("kind") == "chunks":
        return ChunkedPartitions(name=data["name"], upstream=source_from_metadata(data["upstream"]), size=int(data["size"]))
    raise ValueError(f"{SOURCE_METADATA_KEY} metadata {data!r}: kind must be 'files' or 'chunks'")


def partition_sources(assets: Sequence[Any]) -> list[PartitionSource]:
    """The file-backed partitions of these assets, from their own metadata, each once.

    Files first, then the chunks built on them, so registering them in this order (sync)
    finds every chunk's files already registered. Two different sources under one name
    would silently share partitions: that is an error naming both.
    """
    found: dict[str, PartitionSource] = {}
    for asset in assets:
        for key, metadata in getattr(asset, "metadata_by_key", {}).items():
            if SOURCE_METADATA_KEY not in (metadata or {}):
                continue
            source = source_from_metadata(metadata[SOURCE_METADATA_KEY])
            for each in (source.upstream, source) if isinstance(source, ChunkedPartitions) else (source,):
                other = found.setdefault(each.name, each)
                if other != each:
                    raise ValueError(
                        f"asset {key.to_user_string()!r}: partitions {each.name!r} are defined twice, as "
                        f"{other!r} and {each!r}; give the two sources different names"
                    )
    return sorted(found.values(), key=lambda s: (isinstance(s, ChunkedPartitions), s.name))

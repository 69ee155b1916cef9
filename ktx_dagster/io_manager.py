"""The IO manager: `<root>/<asset key path>/<partition key>.<ext>`, atomic, with metadata.

Built on Dagster's UPathIOManager (paths, partitions, multi-partition keys, missing-partition
handling); what it adds is the format chosen by the object's type, atomic writes, lazy loading
of many upstream partitions, and size / row-count metadata on every output.

Atomicity: locally the bytes go to a hidden temporary file in the target folder, then
`os.replace` renames it into place; on S3 the object is serialized in memory and sent in one
PUT (s3fs switches to a multipart upload for big objects, which is invisible until completed
and aborted if a part fails).
Either way a failed or killed write leaves no object under the final name.

Storage failures a user must act on (a configured data root that does not exist, a missing
bucket, no credentials, access denied, an S3 store that keeps failing after its retries) fail
the step with an error naming the path, the setting that chose it and the fix (`data_dir.py`,
`s3_errors.py`); S3 retries themselves are botocore's, configured in `data_dir.py`.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import time
import uuid
from functools import partial
from typing import Any

import dagster as dg
from dagster import InputContext, OutputContext, UPathIOManager
from upath import UPath

from ktx_dagster.keys import FORMAT_METADATA_KEY, LOAD_METADATA_KEY
from ktx_dagster.lazy import LazyPartitions
from ktx_dagster.partitions import natural_sorted
from ktx_dagster.data_dir import DataDir, ensure_local_root
from ktx_dagster.formats import FORMATS, Format, format_by_name, format_for_object, serialize
from ktx_dagster.s3_errors import s3_failures_explained

PREVIEW_ROWS = 5


def _is_local(path: UPath) -> bool:
    return path.protocol in ("", "file", "local")


def markdown_preview(df: Any, rows: int = PREVIEW_ROWS) -> str:
    """A small Markdown table of the first rows (no extra dependency such as tabulate)."""
    head = df.head(rows)
    cols = [str(c) for c in head.columns]

    def cell(value: Any) -> str:
        text = str(value)
        text = text if len(text) <= 60 else text[:57] + "..."
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in head.itertuples(index=False)]
    return "\n".join(lines)


class KtxIOManager(UPathIOManager):
    extension = None  # chosen per object; see resources/formats.py
    # S3: an object of at least two parts of this size goes up as a multipart upload (s3fs:
    # invisible until completed, aborted when a part fails); anything smaller in one PUT.
    multipart_chunksize = 50 * 2**20

    def __init__(self, base_path: UPath, root: str | None = None):
        super().__init__(base_path=base_path)
        self._root = root or str(base_path)  # as configured: errors name the setting that chose it

    def _explained(self, path: UPath, doing: str):
        """S3 failures of one call, told with the bucket, the setting and the fix."""
        endpoint = (path.storage_options.get("client_kwargs") or {}).get("endpoint_url")
        return s3_failures_explained(str(path), doing, self._root, endpoint)

    # --- writing -------------------------------------------------------------------------
    def handle_output(self, context: OutputContext, obj: Any) -> None:
        if obj is None:
            # An asset that wrote its own files (or nothing) returns None: store nothing.
            return
        if context.has_asset_partitions:
            paths = self._get_paths_for_partitions(context)
            if len(paths) != 1:
                raise dg.DagsterInvariantViolationError(
                    f"asset {context.asset_key.to_user_string()!r}: one task writes one partition, "
                    f"but this step covers {len(paths)}; launch the backfill with one run per partition"
                )
            stem = next(iter(paths.values()))
        else:
            stem = self._get_path(context)
        self.dump_to_path(context, obj, stem)

    def dump_to_path(self, context: OutputContext, obj: Any, path: UPath) -> None:
        """Write `obj` at `path` + the extension of its format, atomically, and report metadata."""
        asset = context.asset_key.to_user_string() if context.has_asset_key else context.name
        fmt = format_for_object(obj, asset=asset)
        declared = (context.definition_metadata or {}).get(FORMAT_METADATA_KEY)
        if declared and declared != fmt.name:
            if not format_by_name(declared).accepts(obj):
                raise TypeError(
                    f"asset {asset!r} declares format {declared!r} but returned a "
                    f"{type(obj).__name__}, which is stored as {fmt.name!r}; return the declared "
                    f"type or change the transformation's `format`"
                )
            fmt = format_by_name(declared)  # a format chosen only when declared (arrow)
        target = path.with_name(path.name + fmt.extension)
        context.log.debug(f"writing {target}")
        stats = self._write_atomic(obj, fmt, target)
        self._remove_other_formats(path, keep=fmt)
        metadata: dict[str, Any] = {
            "path": dg.MetadataValue.path(str(target)),
            "bytes": dg.MetadataValue.int(stats.pop("bytes")),
            "format": fmt.name,
        }
        for key, value in stats.items():
            metadata[key] = dg.MetadataValue.int(value) if isinstance(value, int) else value
        if fmt.tabular and hasattr(obj, "head"):
            metadata["preview"] = dg.MetadataValue.md(markdown_preview(obj))
        context.add_output_metadata(metadata)

    def _write_atomic(self, obj: Any, fmt: Format, path: UPath) -> dict[str, Any]:
        if _is_local(path):
            ensure_local_root(self._base_path, self._root)
            final = path.path
            os.makedirs(os.path.dirname(final), exist_ok=True)
            tmp = os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.{uuid.uuid4().hex}.tmp")
            try:
                if fmt.native_paths:
                    stats = fmt.write(obj, tmp)
                else:
                    with open(tmp, "wb") as f:
                        stats = fmt.write(obj, f)
                os.replace(tmp, final)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            _remove_stale_temps(final)
            return {**stats, "bytes": os.path.getsize(final)}
        data, stats = serialize(obj, fmt)  # fails before anything is sent
        with self._explained(path, "writing"):
            path.fs.pipe_file(path.path, data, chunksize=self.multipart_chunksize)
        return {**stats, "bytes": len(data)}

    def _remove_other_formats(self, stem: UPath, keep: Format) -> None:
        # An asset whose output type changed must not leave its old file to be loaded later.
        for other in self._stored(stem):
            if other[0] is not keep:
                with self._explained(other[1], "removing the old format"):
                    other[1].fs.rm_file(other[1].path)

    # --- reading -------------------------------------------------------------------------
    def _stored(self, stem: UPath) -> list[tuple[Format, UPath]]:
        """Stored files for this stem, in FORMATS order (one listing, not a probe per format)."""
        pattern = re.sub(r"([*?\[])", r"[\1]", stem.path) + ".*"  # keys may hold glob characters
        try:
            with self._explained(stem, "listing"):
                names = {p.rsplit("/", 1)[-1] for p in stem.fs.glob(pattern)}
        except FileNotFoundError:
            return []
        found = []
        for fmt in FORMATS:
            name = stem.name + fmt.extension
            if name in names:
                found.append((fmt, stem.with_name(name)))
        return found

    def _load_stem(self, stem: UPath, declared: str | None, **read_options: Any) -> Any:
        if declared:
            fmt = format_by_name(declared)
            try:
                return self._read(fmt, stem.with_name(stem.name + fmt.extension), read_options)
            except FileNotFoundError:
                pass  # stored before the asset declared this format (or not at all): see what is there
        stored = self._stored(stem)
        if not stored:
            if _is_local(stem):
                ensure_local_root(self._base_path, self._root)  # a missing root, not a missing output
            raise FileNotFoundError(f"no stored output at {stem}.* (not materialized yet?)")
        return self._read(*stored[0], read_options)

    def _read(self, fmt: Format, path: UPath, read_options: dict[str, Any]) -> Any:
        unknown = sorted(set(read_options) - set(fmt.read_options))
        if unknown:
            raise TypeError(
                f"{path}: {fmt.name} files take no read option {', '.join(unknown)}"
                f" (supported: {', '.join(fmt.read_options) or 'none'})"
            )
        if _is_local(path):
            if fmt.native_paths:
                return fmt.read(path.path, **read_options)
            with open(path.path, "rb") as f:
                return fmt.read(f, **read_options)
        # Remote: one GET of the whole object; the options still spare decoding the rest.
        with self._explained(path, "reading"):
            data = path.fs.cat_file(path.path)
        return fmt.read(io.BytesIO(data), **read_options)

    @staticmethod
    def _declared_format(context: InputContext) -> str | None:
        upstream = context.upstream_output
        if upstream is None:
            return None
        return (upstream.definition_metadata or {}).get(FORMAT_METADATA_KEY)

    def load_from_path(self, context: InputContext, path: UPath) -> Any:
        return self._load_stem(path, self._declared_format(context))

    def load_partitions(self, context: InputContext):
        mode = (context.definition_metadata or {}).get(LOAD_METADATA_KEY)
        if mode not in ("lazy", "many"):
            return super().load_partitions(context)
        unordered = self._get_paths_for_partitions(context)
        paths = {key: unordered[key] for key in natural_sorted(unordered)}  # part 2 before part 10
        declared = self._declared_format(context)
        context.log.info(
            f"{'lazily ' if mode == 'lazy' else ''}loading {len(paths)} partitions of "
            f"{context.asset_key.to_user_string()}"
        )
        if mode == "lazy":
            return LazyPartitions({key: partial(self._load_stem, path, declared) for key, path in paths.items()})
        return {key: self._load_stem(path, declared) for key, path in paths.items()}


class DataDirIOManager(dg.ConfigurableIOManagerFactory):
    """Stores every asset under the data dir it is given (`DataDir`: a local path or s3://...).

    The data dir is a resource of its own, so the data root has one source of truth: pass
    the same `DataDir` that the code location's `data_dir` resource is (`data_resources()`
    and `definitions_for()` do).
    """

    data_dir: DataDir

    def create_io_manager(self, context: dg.InitResourceContext) -> KtxIOManager:
        return KtxIOManager(base_path=self.data_dir.path, root=self.data_dir.root)


# A temp file untouched this long belongs to a writer that was killed (SIGKILL, OOM, node
# loss) before it could clean up; a live writer's temp file is younger (it is written after
# the task's work, in one go). Loaders never see temp files; this only reclaims the space.
STALE_TEMP_SECONDS = 15 * 60


def _remove_stale_temps(final: str) -> None:
    folder, name = os.path.split(final)
    prefix, cutoff = f".{name}.", time.time() - STALE_TEMP_SECONDS
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(prefix) and entry.name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)


def data_resources(root: str | os.PathLike | DataDir | None = None, endpoint_url: str | None = None) -> dict[str, Any]:
    """The `data_dir` resource and an IO manager on it: what every transformation needs.

    root: a local folder, `s3://bucket/prefix`, or a DataDir; default env KTX_DATA_DIR, else
    ./data. For tests: `dg.materialize(assets, resources=data_resources(tmp_path))`.
    """
    if isinstance(root, DataDir):
        data_dir = root
    elif root is None:
        data_dir = DataDir(endpoint_url=endpoint_url)
    else:
        data_dir = DataDir(root=os.fspath(root), endpoint_url=endpoint_url)
    return {"data_dir": data_dir, "io_manager": DataDirIOManager(data_dir=data_dir)}

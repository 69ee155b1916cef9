"""How each kind of Python object is stored: one Format per type, chosen by the object.

pandas DataFrame / pyarrow Table -> Parquet, dict / list -> JSON, str -> UTF-8 text,
bytes -> raw bytes, numpy arrays -> .npy, scipy.sparse matrices -> .npz (compressed CSR/COO).
Formats only turn objects into bytes on a binary file object and back; where the bytes go
(local temp file + rename, or one S3 PUT) is the IO manager's business.

One format is never chosen by type, only declared (`@transformation(format="arrow")`):
"arrow", an uncompressed Arrow IPC file (.arrow) for DataFrames / Tables that many tasks
read whole. A local read memory-maps the file and hands pandas the mapped buffers (numeric
columns without nulls are not copied, so their arrays are read-only), where parquet decodes
every page: reading costs next to nothing, and the pages are the page cache's, shared by
every task on the node that reads the same file. The price: files several times parquet's
size, and on S3 the whole object is downloaded as usual. Parquet stays the default.
A mapped file stays valid while a later write replaces it: writes go to a new file that is
renamed over the old one, never into the old one.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def _is_sparse(obj: Any) -> bool:
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover - scipy is a dependency
        return False
    return sp.issparse(obj)


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays show up in dicts built from DataFrames; store them as plain JSON.
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _write_parquet(obj: Any, f: BinaryIO) -> dict[str, Any]:
    table = obj if isinstance(obj, pa.Table) else pa.Table.from_pandas(obj)
    pq.write_table(table, f)
    return {"rows": table.num_rows, "columns": table.num_columns}


def _read_parquet(f: BinaryIO | str, columns: list[str] | None = None, filters: Any = None) -> pd.DataFrame:
    return pq.read_table(f, columns=columns, filters=filters).to_pandas()


def _write_arrow(obj: Any, f: BinaryIO | str) -> dict[str, Any]:
    table = obj if isinstance(obj, pa.Table) else pa.Table.from_pandas(obj)
    with pa.ipc.new_file(f, table.schema) as writer:  # uncompressed: readable in place
        writer.write_table(table)
    return {"rows": table.num_rows, "columns": table.num_columns}


def _read_arrow(f: BinaryIO | str, columns: list[str] | None = None) -> pd.DataFrame:
    # A local path is memory-mapped: read_all() then references the mapping, no bytes read.
    # Otherwise (S3: the downloaded object) the table references the bytes read, no second copy.
    source = pa.memory_map(f) if isinstance(f, str) else pa.BufferReader(f.read())
    table = pa.ipc.open_file(source).read_all()
    if columns is not None:
        table = table.select(columns)
    # split_blocks: one pandas block per column, so numeric columns stay views of the Arrow
    # buffers (the default consolidates same-dtype columns into one 2-D block: a copy).
    return table.to_pandas(split_blocks=True)


def _write_json(obj: Any, f: BinaryIO) -> dict[str, Any]:
    f.write(json.dumps(obj, default=_json_default, separators=(",", ":")).encode())
    return {"items": len(obj)}


def _write_text(obj: str, f: BinaryIO) -> dict[str, Any]:
    data = obj.encode("utf-8")
    f.write(data)
    return {"lines": obj.count("\n") + (0 if obj.endswith("\n") or not obj else 1)}


def _write_npy(obj: np.ndarray, f: BinaryIO) -> dict[str, Any]:
    np.save(f, obj, allow_pickle=False)
    return {"shape": str(obj.shape), "dtype": str(obj.dtype)}


def _write_npz(obj: Any, f: BinaryIO) -> dict[str, Any]:
    import scipy.sparse as sp

    sp.save_npz(f, obj, compressed=True)
    return {"shape": str(obj.shape), "nnz": int(obj.nnz)}


def _read_npz(f: BinaryIO) -> Any:
    import scipy.sparse as sp

    return sp.load_npz(f)


@dataclass(frozen=True)
class Format:
    name: str
    extension: str
    accepts: Callable[[Any], bool]
    write: Callable[[Any, BinaryIO], dict[str, Any]]
    read: Callable[[BinaryIO], Any]
    # True when write/read also take a local path, letting pyarrow use its native file I/O
    # (and memory mapping) instead of a Python file object.
    native_paths: bool = False
    # Keyword options `read` takes (a lazy loader passes them on): read part of a file.
    read_options: tuple[str, ...] = ()
    # False: used only when an asset declares it (`format=`), never chosen by the object's type.
    by_type: bool = True
    # Tables: the output's metadata shows its first rows.
    tabular: bool = False


FORMATS: tuple[Format, ...] = (
    Format("parquet", ".parquet", lambda o: isinstance(o, (pd.DataFrame, pa.Table)), _write_parquet, _read_parquet,
           native_paths=True, read_options=("columns", "filters"), tabular=True),
    Format("arrow", ".arrow", lambda o: isinstance(o, (pd.DataFrame, pa.Table)), _write_arrow, _read_arrow,
           native_paths=True, read_options=("columns",), by_type=False, tabular=True),
    Format("json", ".json", lambda o: isinstance(o, (dict, list)), _write_json, lambda f: json.load(f)),
    Format("text", ".txt", lambda o: isinstance(o, str), _write_text, lambda f: f.read().decode("utf-8")),
    Format("bytes", ".bin", lambda o: isinstance(o, (bytes, bytearray)), lambda o, f: (f.write(o), {})[1], lambda f: f.read()),
    Format("npy", ".npy", lambda o: isinstance(o, np.ndarray), _write_npy, lambda f: np.load(f, allow_pickle=False)),
    Format("npz", ".npz", _is_sparse, _write_npz, _read_npz),
)
FORMATS_BY_NAME = {fmt.name: fmt for fmt in FORMATS}


class UnsupportedOutputType(TypeError):
    pass


def format_for_object(obj: Any, *, asset: str = "") -> Format:
    for fmt in FORMATS:
        if fmt.by_type and fmt.accepts(obj):
            return fmt
    supported = ", ".join(f"{f.name} ({f.extension})" for f in FORMATS if f.by_type)
    raise UnsupportedOutputType(
        f"asset {asset!r} returned a {type(obj).__module__}.{type(obj).__name__}, which no "
        f"ktx format stores; return a DataFrame, dict/list, str, bytes, numpy array or "
        f"scipy.sparse matrix (formats: {supported})"
    )


def format_by_name(name: str) -> Format:
    try:
        return FORMATS_BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown ktx format {name!r}; known: {sorted(FORMATS_BY_NAME)}") from None


def serialize(obj: Any, fmt: Format) -> tuple[bytes, dict[str, Any]]:
    """In-memory bytes, for stores where one PUT is the atomic unit (S3)."""
    buf = io.BytesIO()
    stats = fmt.write(obj, buf)
    return buf.getvalue(), stats

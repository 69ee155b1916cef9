"""IO manager round trips through real Dagster runs, on a local dir and on a real S3 endpoint."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import dagster as dg
from upath import UPath

from ktx_dagster import LazyPartitions, Upstream, transformation
from ktx_dagster.data_dir import data_root
from ktx_dagster.io_manager import data_resources
from ktx_dagster.keys import FORMAT_METADATA_KEY

SAMPLES = {
    "frame": pd.DataFrame({"pid": [1, 2, 3], "name": ["a", "b", None], "score": [0.5, 1.5, 2.5]}),
    "mapping": {"a": 1, "b": [1, 2], "c": {"d": None}, "e": np.int64(7)},
    "listing": [1, "two", 3.0],
    "text": "line 1\nline ü\n",
    "blob": b"\x00\x01binary\xff",
    "array": np.arange(12, dtype=np.float32).reshape(3, 4),
    "sparse": sp.random(50, 40, density=0.05, format="csr", random_state=0, dtype=np.float32),
}
# Kinds stored in a format the asset declares rather than the one its type picks.
DECLARED = {"arrow_frame": "arrow"}
SAMPLES["arrow_frame"] = SAMPLES["frame"]
EXTENSIONS = {"frame": ".parquet", "mapping": ".json", "listing": ".json", "text": ".txt", "blob": ".bin", "array": ".npy",
              "sparse": ".npz", "arrow_frame": ".arrow"}


def assert_same(kind, got, want):
    if kind in ("frame", "arrow_frame"):
        pd.testing.assert_frame_equal(got, want)
    elif kind == "mapping":
        assert got == {"a": 1, "b": [1, 2], "c": {"d": None}, "e": 7}
    elif kind == "array":
        np.testing.assert_array_equal(got, want)
    elif kind == "sparse":
        assert (got != want).nnz == 0 and got.dtype == want.dtype
    else:
        assert got == want


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def root(request, tmp_path, monkeypatch):
    if request.param == "local":
        (tmp_path / "data").mkdir()
        path = str(tmp_path / "data")
    else:
        path = request.getfixturevalue("s3_root")
    monkeypatch.setenv("KTX_DATA_DIR", path)
    return path


def _resources(root):
    return data_resources(root)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_round_trip_unpartitioned(root, kind, instance):
    @dg.asset(name=f"make_{kind}", metadata={FORMAT_METADATA_KEY: DECLARED[kind]} if kind in DECLARED else None)
    def make():
        return SAMPLES[kind]

    captured = {}

    @dg.asset(ins={"value": dg.AssetIn(f"make_{kind}")})
    def read(value) -> None:
        captured["value"] = value

    result = dg.materialize([make, read], resources=_resources(root), instance=instance)
    assert result.success
    assert_same(kind, captured["value"], SAMPLES[kind])
    meta = result.asset_materializations_for_node(f"make_{kind}")[0].metadata
    path = UPath(meta["path"].value, **({"client_kwargs": {"endpoint_url": _endpoint()}} if root.startswith("s3") else {}))
    assert str(path).endswith(f"make_{kind}{EXTENSIONS[kind]}")
    assert path.exists() and meta["bytes"].value == path.stat().st_size > 0
    if kind in ("frame", "arrow_frame"):
        assert meta["rows"].value == 3 and "| pid |" in meta["preview"].value
        assert meta["format"].value == EXTENSIONS[kind][1:]


def _endpoint():
    import os

    return os.environ.get("KTX_S3_ENDPOINT_URL")


@pytest.mark.parametrize("kind", ["frame", "text", "sparse", "arrow_frame"])
def test_round_trip_partitioned_and_layout(root, kind, instance):
    @transformation(partitions=["x-1", "y.2"], name=f"parts_{kind}", format=DECLARED.get(kind))
    def parts(context):
        return SAMPLES[kind]

    for key in ("x-1", "y.2"):
        assert dg.materialize([parts], partition_key=key, resources=_resources(root), instance=instance).success
    base = data_root(root) / f"parts_{kind}"
    assert sorted(p.name for p in base.iterdir()) == [f"x-1{EXTENSIONS[kind]}", f"y.2{EXTENSIONS[kind]}"]


def test_lazy_multi_partition_load_loads_on_demand(root, instance):
    keys = [str(i) for i in range(5)]

    @transformation(partitions=keys)
    def chunk(context) -> pd.DataFrame:
        i = int(context.partition_key)
        return pd.DataFrame({"k": [i] * (i + 1)})

    seen = {}

    @transformation(inputs={"chunk": Upstream("chunk", mapping=dg.AllPartitionMapping())})
    def total(chunk: LazyPartitions) -> dict:
        seen["type"], seen["keys"] = type(chunk), list(chunk)
        # Only the first four are ever loaded: the fifth file is gone, and that must not matter.
        rows = sum(len(chunk[key]()) for key in keys[:4])
        return {"rows": rows}

    for key in keys:
        dg.materialize([chunk], partition_key=key, resources=_resources(root), instance=instance)
    (data_root(root) / "chunk" / "4.parquet").unlink()
    result = dg.materialize([chunk, total], selection=[total], resources=_resources(root), instance=instance)
    assert result.success
    assert seen["type"] is LazyPartitions and seen["keys"] == keys
    assert result.output_for_node("total") == {"rows": 1 + 2 + 3 + 4}


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_lazy_loader_reads_a_slice_of_a_partition(root, instance, fmt):
    """Read options reach pyarrow: only the columns asked for, and (parquet) only the shard asked for."""
    keys = ["0", "1"]
    options = {"columns": ["shard", "key"], **({"filters": [("shard", "=", 2)]} if fmt == "parquet" else {})}

    @transformation(partitions=keys, format=fmt)
    def partial(context) -> pd.DataFrame:
        # grouped by shard, in row groups small enough that the filter skips some of them
        n = 10_000
        return pd.DataFrame({"shard": np.repeat(np.arange(4, dtype=np.int8), n // 4),
                             "key": np.arange(n) + int(context.partition_key), "count": np.ones(n, np.int32)})

    seen = {}

    @transformation(inputs={"partial": Upstream("partial", mapping=dg.AllPartitionMapping())})
    def shard_two(partial: LazyPartitions) -> dict:
        frames = [partial.load(k, **options) for k in partial]
        seen["columns"] = [list(f.columns) for f in frames]
        seen["shards"] = sorted({int(s) for f in frames for s in f["shard"]})
        try:
            partial["0"](window=3)
        except TypeError as exc:
            seen["error"] = str(exc)
        return {"rows": sum(len(f) for f in frames)}

    for key in keys:
        dg.materialize([partial], partition_key=key, resources=_resources(root), instance=instance)
    result = dg.materialize([partial, shard_two], selection=[shard_two], resources=_resources(root), instance=instance)
    assert seen["columns"] == [["shard", "key"]] * 2
    if fmt == "parquet":
        assert result.output_for_node("shard_two") == {"rows": 2 * 2_500} and seen["shards"] == [2]
        assert "0.parquet: parquet files take no read option window (supported: columns, filters)" in seen["error"]
    else:
        assert result.output_for_node("shard_two") == {"rows": 2 * 10_000} and seen["shards"] == [0, 1, 2, 3]
        assert "0.arrow: arrow files take no read option window (supported: columns)" in seen["error"]


def test_many_load_always_returns_dict_even_for_one_partition(root, instance):
    @transformation(partitions=["only"])
    def single(context) -> str:
        return "x"

    captured = {}

    @transformation(inputs={"single": Upstream("single", mapping=dg.AllPartitionMapping())})
    def gather(single: dict[str, str]) -> None:
        captured["value"] = single

    dg.materialize([single], partition_key="only", resources=_resources(root), instance=instance)
    assert dg.materialize([single, gather], selection=[gather], resources=_resources(root), instance=instance).success
    assert captured["value"] == {"only": "x"}


class Explodes:
    """A DataFrame column whose values fail to convert half way through serialization."""


def _fail_after_writing(monkeypatch, fmt: str = "parquet") -> None:
    """Writes of `fmt` put every byte into the file they were given, then fail: a disk that
    fills up or a process that dies after the data went out, not before."""
    import dataclasses

    from ktx_dagster import formats, io_manager

    real = formats.FORMATS_BY_NAME[fmt]

    def write_then_fail(obj, f):
        real.write(obj, f)
        raise OSError("No space left on device (injected after the bytes were written)")

    broken = dataclasses.replace(real, write=write_then_fail)
    patched = tuple(broken if fmt is real else fmt for fmt in formats.FORMATS)
    for module in (formats, io_manager):
        monkeypatch.setattr(module, "FORMATS", patched)
    monkeypatch.setitem(formats.FORMATS_BY_NAME, fmt, broken)


def _overwrite_fails_mid_write(root, instance, monkeypatch) -> tuple[bytes, bytes, list[str]]:
    """A good output, then a re-run whose write fails after its bytes went out: (the stored
    bytes before, after, and the names in the asset's folder)."""
    state = {"value": pd.DataFrame({"v": [1, 2, 3]})}

    @transformation(partitions=["p"])
    def fragile(context) -> pd.DataFrame:
        return state["value"]

    assert dg.materialize([fragile], partition_key="p", resources=_resources(root), instance=instance).success
    target = data_root(root) / "fragile" / "p.parquet"
    before = target.read_bytes()
    state["value"] = pd.DataFrame({"v": [7, 8, 9, 10]})  # valid data: the write itself fails
    with monkeypatch.context() as m:
        _fail_after_writing(m)
        result = dg.materialize([fragile], partition_key="p", resources=_resources(root), instance=instance,
                                raise_on_error=False)
    assert not result.success
    return before, target.read_bytes(), sorted(p.name for p in target.parent.iterdir())


@pytest.mark.reliability(
    "fault", case="a write failing after its bytes went out",
    injected="re-running a stored partition with a parquet writer that writes every byte, then raises 'No space left "
             "on device'",
    seen="the step fails with that error",
    outcome="the previous output intact byte for byte, no temporary file left; a writer straight to the final path "
            "(locally, or s3fs's file object on S3) is shown to fail this test")
def test_failed_write_leaves_nothing_and_keeps_previous_output(root, instance, monkeypatch):
    """Locally the new bytes are in the temporary file when the write fails; on S3 they are in
    the upload's body, which is then never sent (a cut on the wire: tests/test_s3_faults.py)."""
    before, after, names = _overwrite_fails_mid_write(root, instance, monkeypatch)
    assert after == before  # the old output is intact
    assert names == ["p.parquet"]  # no temp leftovers


def test_a_non_atomic_writer_would_fail_the_test_above(root, instance, monkeypatch):
    """The check above can fail: writing straight to the final path leaves the failed write's
    bytes where the previous output was. Locally: the file itself. On S3: s3fs's file object,
    as `df.to_parquet("s3://...")` uses it; leaving its `with` block by an error still closes
    it, and closing uploads what it was given. (A failure on the wire, an upload cut mid-body,
    is tests/test_s3_faults.py's.)"""
    from ktx_dagster.io_manager import KtxIOManager

    def write_in_place(self, obj, fmt, path):
        if path.protocol in ("", "file", "local"):
            os.makedirs(os.path.dirname(path.path), exist_ok=True)
            stats = fmt.write(obj, path.path)
        else:
            with path.fs.open(path.path, "wb") as f:
                stats = fmt.write(obj, f)
        return {**stats, "bytes": path.fs.size(path.path)}

    monkeypatch.setattr(KtxIOManager, "_write_atomic", write_in_place)
    before, after, _ = _overwrite_fails_mid_write(root, instance, monkeypatch)
    assert after != before


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_failed_first_write_leaves_no_file(root, instance, monkeypatch, fmt):
    @transformation(partitions=["p"], format=fmt)
    def broken(context) -> pd.DataFrame:
        return pd.DataFrame({"v": [1, 2, 3]})

    _fail_after_writing(monkeypatch, fmt)
    result = dg.materialize([broken], partition_key="p", resources=_resources(root), instance=instance, raise_on_error=False)
    assert not result.success
    folder = data_root(root) / "broken"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_unconvertible_values_fail_before_anything_is_written(root, instance):
    @transformation(partitions=["p"])
    def mixed(context) -> pd.DataFrame:
        return pd.DataFrame({"v": [1, "two", Explodes()]})

    result = dg.materialize([mixed], partition_key="p", resources=_resources(root), instance=instance, raise_on_error=False)
    assert not result.success
    folder = data_root(root) / "mixed"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_output_type_change_removes_old_format(root, instance):
    state = {"value": {"a": 1}}

    @transformation(partitions=["p"])
    def shifting(context):
        return state["value"]

    dg.materialize([shifting], partition_key="p", resources=_resources(root), instance=instance)
    state["value"] = pd.DataFrame({"a": [1]})
    dg.materialize([shifting], partition_key="p", resources=_resources(root), instance=instance)
    assert sorted(p.name for p in (data_root(root) / "shifting").iterdir()) == ["p.parquet"]


def test_a_newly_declared_format_still_reads_outputs_stored_before(root, instance):
    """An asset switched to `format="arrow"` keeps its parquet outputs readable until they are
    re-materialized (a loader looks for the declared file first, then for what is stored)."""
    frame = pd.DataFrame({"v": [1, 2, 3]})

    @transformation(partitions=["p"], name="migrating")
    def as_parquet(context) -> pd.DataFrame:
        return frame

    @transformation(partitions=["p"], name="migrating", format="arrow")
    def as_arrow(context) -> pd.DataFrame:
        return frame

    seen = {}

    @transformation(inputs={"parts": Upstream("migrating", mapping=dg.AllPartitionMapping())})
    def reader(parts: LazyPartitions) -> None:
        seen["frame"] = parts.load("p", columns=["v"])

    assert dg.materialize([as_parquet], partition_key="p", resources=_resources(root), instance=instance).success
    assert dg.materialize([as_arrow, reader], selection=[reader], resources=_resources(root), instance=instance).success
    pd.testing.assert_frame_equal(seen["frame"], frame)
    assert dg.materialize([as_arrow], partition_key="p", resources=_resources(root), instance=instance).success
    assert sorted(p.name for p in (data_root(root) / "migrating").iterdir()) == ["p.arrow"]


def test_unsupported_type_error_names_asset_and_fix(root, instance):
    @transformation(partitions=["p"])
    def odd(context):
        return object()

    result = dg.materialize([odd], partition_key="p", resources=_resources(root), instance=instance, raise_on_error=False)
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.event_specific_data.error.to_string()
    assert "'odd'" in message and "return a DataFrame" in message


def test_declared_format_mismatch_is_clear(root, instance):
    @transformation(partitions=["p"], format="parquet")
    def wrong(context):
        return "text"

    result = dg.materialize([wrong], partition_key="p", resources=_resources(root), instance=instance, raise_on_error=False)
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "declares format 'parquet'" in failure.event_specific_data.error.to_string()


@pytest.mark.reliability(
    "fault", case="temp files left by a writer killed mid-write",
    injected="a stale `.<name>.<id>.tmp` (mtime 16 min ago) and a fresh one (a live writer's) beside a partition",
    seen="nothing: loaders never see temp files",
    outcome="the next successful write of that partition removes the stale temp file and keeps the live one")
def test_the_next_write_reclaims_temp_files_of_killed_writers(tmp_path, instance):
    from ktx_dagster.io_manager import STALE_TEMP_SECONDS

    @transformation(partitions=["a"], format="text")
    def words(context) -> str:
        return "words\n"

    folder = tmp_path / "words"
    folder.mkdir()
    stale, live = folder / ".a.txt.dead.tmp", folder / ".a.txt.live.tmp"
    stale.write_bytes(b"half")
    live.write_bytes(b"being written")
    old = os.path.getmtime(stale) - STALE_TEMP_SECONDS - 60
    os.utime(stale, (old, old))
    assert dg.materialize([words], partition_key="a", instance=instance, resources=data_resources(tmp_path)).success
    assert sorted(p.name for p in folder.iterdir()) == [".a.txt.live.tmp", "a.txt"]


def _mapped_files(address: int) -> list[str]:
    """Files whose memory mapping in this process holds `address` (Linux /proc/self/maps)."""
    found = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if lo <= address < hi and len(fields) == 6:
                found.append(fields[5].strip())
    return found


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc")
def test_local_arrow_read_maps_the_file_and_survives_its_replacement(tmp_path, instance):
    """Many tasks read an arrow output whole: locally its numeric columns are the file's
    mapped pages, not a decoded copy; and a re-materialization replaces the file (rename)
    without changing what a reader already mapped."""
    state = {"v": np.arange(100_000, dtype=np.int64)}

    @transformation(partitions=["p"], format="arrow")
    def table(context) -> pd.DataFrame:
        return pd.DataFrame({"v": state["v"], "w": state["v"].astype(np.int32)})

    captured = {}

    @transformation(inputs={"table": Upstream("table", mapping=dg.AllPartitionMapping())})
    def reader(table: LazyPartitions) -> None:
        captured["frame"] = table["p"]()

    resources = data_resources(tmp_path)
    assert dg.materialize([table], partition_key="p", resources=resources, instance=instance).success
    assert dg.materialize([table, reader], selection=[reader], resources=resources, instance=instance).success
    frame = captured["frame"]
    path = str(tmp_path / "table" / "p.arrow")
    for column in ("v", "w"):
        assert _mapped_files(frame[column].to_numpy().__array_interface__["data"][0]) == [path]
    state["v"] = state["v"] * 2
    assert dg.materialize([table], partition_key="p", resources=resources, instance=instance).success
    np.testing.assert_array_equal(frame["v"].to_numpy(), np.arange(100_000))

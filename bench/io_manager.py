"""IO manager vs plain pyarrow: write and read one DataFrame, locally and on an S3 endpoint.

    .venv/bin/python bench/io_manager.py [--rows 2000000] [--repeat 3] [--no-s3]

The S3 side talks to moto's server mode on loopback (a real S3 HTTP endpoint, in-memory
storage), so its numbers measure protocol + serialization overhead, not a network. Prints a
table, the ratios, and as its last line one JSON object. Target: IO manager within 1.15x of
plain pyarrow locally (write + read).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dagster as dg  # noqa: E402

from ktx_dagster.io_manager import KtxIOManager  # noqa: E402
from ktx_dagster.data_dir import data_root  # noqa: E402


def frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "pid": np.arange(rows, dtype=np.int64),
        "track_id": rng.integers(0, 2_000_000, rows, dtype=np.int32),
        "pos": rng.integers(0, 250, rows, dtype=np.int16),
        "score": rng.random(rows),
        "name": pd.Series(rng.choice(np.array([f"playlist {i}" for i in range(5000)]), rows), dtype="string"),
    })


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_backend(root: str, df: pd.DataFrame, repeat: int, fs=None) -> dict[str, float]:
    manager = KtxIOManager(base_path=data_root(root))
    key = dg.AssetKey(["bench", "frame"])
    out_ctx = dg.build_output_context(asset_key=key, name="result")
    in_ctx = dg.build_input_context(asset_key=key, upstream_output=out_ctx)
    table_path = root.rstrip("/") + "/plain/frame.parquet"

    def plain_write():
        table = pa.Table.from_pandas(df)
        if fs is None:
            os.makedirs(os.path.dirname(table_path), exist_ok=True)
            pq.write_table(table, table_path)
        else:
            pq.write_table(table, table_path.removeprefix("s3://"), filesystem=fs)

    def plain_read():
        if fs is None:
            return pq.read_table(table_path).to_pandas()
        return pq.read_table(table_path.removeprefix("s3://"), filesystem=fs).to_pandas()

    result = {
        "io_write_s": timed(lambda: manager.handle_output(dg.build_output_context(asset_key=key, name="result"), df), repeat),
        "io_read_s": timed(lambda: manager.load_input(in_ctx), repeat),
        "pyarrow_write_s": timed(plain_write, repeat),
        "pyarrow_read_s": timed(plain_read, repeat),
    }
    loaded = manager.load_input(in_ctx)
    assert len(loaded) == len(df) and loaded["pid"].iloc[-1] == df["pid"].iloc[-1]
    result["ratio_write"] = result["io_write_s"] / result["pyarrow_write_s"]
    result["ratio_read"] = result["io_read_s"] / result["pyarrow_read_s"]
    result["ratio_total"] = (result["io_write_s"] + result["io_read_s"]) / (result["pyarrow_write_s"] + result["pyarrow_read_s"])
    return {k: round(v, 4) for k, v in result.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-s3", action="store_true")
    args = parser.parse_args()
    df = frame(args.rows)
    results: dict[str, object] = {"rows": args.rows, "repeat": args.repeat,
                                  "frame_mb": round(df.memory_usage(deep=True).sum() / 2**20, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        results["local"] = bench_backend(tmp, df, args.repeat)
    if not args.no_s3:
        import boto3
        import s3fs

        from ktx_dagster.testing.s3 import moto_s3_server

        with moto_s3_server() as endpoint:
            os.environ["KTX_S3_ENDPOINT_URL"] = endpoint
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
            fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint})
            results["s3"] = bench_backend("s3://bench/ktx", df, args.repeat, fs=fs)
    print(f"{'backend':<8}{'io write':>10}{'io read':>10}{'pa write':>10}{'pa read':>10}{'ratio':>8}")
    for backend in ("local", "s3"):
        if backend in results:
            r = results[backend]
            print(f"{backend:<8}{r['io_write_s']:>10.3f}{r['io_read_s']:>10.3f}{r['pyarrow_write_s']:>10.3f}"
                  f"{r['pyarrow_read_s']:>10.3f}{r['ratio_total']:>8.3f}")
    local_ratio = results["local"]["ratio_total"]
    results["target_local_ratio"] = 1.15
    results["target_met"] = local_ratio <= 1.15
    print(f"local IO manager / plain pyarrow = {local_ratio:.3f}x (target <= 1.15x)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

"""The whole Spotify chain through Dagster, as a user runs it: every partition a real run in a
fresh instance, executed by the local multiprocess executor via `python -m ktx_dagster`.

    .venv/bin/python bench/spotify.py --slices 80 [--slices-per-part 10] [--max-concurrent 2]

Generation is cached under bench/.cache/ and not timed. Prints per-asset wall time, runs and
the peak RSS of its largest task (recorded by every task as `task_peak_rss_mb`), then the
model's and the popularity baseline's scores; the last line is one JSON object.
Targets (2 cores): whole 80k chain <= 15 min (aim 10), no task above 2 GiB peak RSS, model
beats the baseline on R-precision, NDCG and clicks. Run at 20, 40 and 80 slices with the same
--slices-per-part and --per-category (e.g. 5 and 200: 4, 8 and 16 parts) to see per-task
memory stay flat as parts are added.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def generate(slices: int, size_name: str, cache: Path) -> Path:
    from spotify_mpc.sizes import get_size

    size = get_size(size_name)
    out = cache / f"mpd-{slices}-{size.playlists_per_slice}-{size.official_challenge_size}"
    if not (out / "challenge_set.json").exists():
        tmp = out.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "spotify_mpc.generate", "--slices", str(slices), "--out", str(tmp),
                        "--seed", "0", "--challenge-size", str(size.official_challenge_size),
                        "--playlists-per-slice", str(size.playlists_per_slice), "--quiet"], check=True, cwd=REPO)
        tmp.rename(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, default=80)
    ap.add_argument("--size", default="80k", help="contest preset for sample sizes (KTX_SPOTIFY_SIZE)")
    ap.add_argument("--slices-per-part", type=int, default=None, help="KTX_SLICES_PER_PART (default: the preset's)")
    ap.add_argument("--per-category", type=int, default=None,
                    help="KTX_CHALLENGE_PER_CATEGORY (default: the preset's; 5-slice parts need fewer)")
    ap.add_argument("--max-concurrent", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--keep", action="store_true", help="keep the data dir and instance")
    args = ap.parse_args()

    raw = generate(args.slices, args.size, REPO / "bench" / ".cache")
    work = Path(tempfile.mkdtemp(prefix="ktx-bench-spotify-"))
    data, home = work / "data", work / "home"
    shutil.copytree(raw, data / "spotify_mpc" / "raw")
    home.mkdir()
    env = {**os.environ, "KTX_DATA_DIR": str(data), "DAGSTER_HOME": str(home), "KTX_SPOTIFY_SIZE": args.size,
           "KTX_MAX_CONCURRENT": str(args.max_concurrent)}
    if args.slices_per_part:
        env["KTX_SLICES_PER_PART"] = str(args.slices_per_part)
    if args.per_category:
        env["KTX_CHALLENGE_PER_CATEGORY"] = str(args.per_category)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ktx_dagster", "materialize", "-m", "spotify_mpc.definitions", "--select", "group:spotify_mpc"],
                          cwd=REPO, env=env, capture_output=True, text=True)
    total = time.perf_counter() - started
    if proc.returncode != 0:
        print(proc.stdout[-5000:], proc.stderr[-3000:])
        sys.exit(f"chain failed (exit {proc.returncode}); data kept in {work}")

    os.environ.update({k: env[k] for k in ("DAGSTER_HOME", "KTX_DATA_DIR")})
    import dagster as dg

    per_asset: dict[str, dict] = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[2] == "ok," and parts[-1].endswith("s"):
            per_asset[parts[0]] = {"runs": int(parts[1]), "seconds": float(parts[-1][:-1])}
    metrics: dict[str, float] = {}
    with dg.DagsterInstance.get() as instance:
        for name, row in per_asset.items():
            records = instance.fetch_materializations(dg.AssetKey(name), limit=10_000).records
            rss = [r.asset_materialization.metadata["task_peak_rss_mb"].value for r in records
                   if "task_peak_rss_mb" in r.asset_materialization.metadata]
            row["max_task_rss_mb"] = max(rss) if rss else None
        event = instance.get_latest_materialization_event(dg.AssetKey("evaluation"))
        for key, value in event.asset_materialization.metadata.items():
            if key.startswith(("model_", "popularity_")):
                metrics[key] = round(float(value.value), 4)
    print(f"{'asset':<26}{'runs':>6}{'wall s':>9}{'max task RSS MiB':>18}")
    for name, row in per_asset.items():
        print(f"{name:<26}{row['runs']:>6}{row['seconds']:>9.1f}{row['max_task_rss_mb'] or 0:>18.1f}")
    max_rss = max((r["max_task_rss_mb"] or 0) for r in per_asset.values())
    result = {
        "slices": args.slices, "size": args.size, "slices_per_part": args.slices_per_part,
        "per_category": args.per_category,
        "max_concurrent": args.max_concurrent, "total_seconds": round(total, 1), "max_task_rss_mb": max_rss,
        "runs": sum(r["runs"] for r in per_asset.values()),
        "r_precision": metrics.get("model_r_precision"), "ndcg": metrics.get("model_ndcg"),
        "clicks": metrics.get("model_clicks"), "baseline_r_precision": metrics.get("popularity_r_precision"),
        "baseline_ndcg": metrics.get("popularity_ndcg"), "baseline_clicks": metrics.get("popularity_clicks"),
        "per_asset": per_asset,
    }
    result["targets_met"] = bool(
        total <= 15 * 60 and max_rss <= 2048 and result["r_precision"] > result["baseline_r_precision"]
        and result["ndcg"] > result["baseline_ndcg"] and result["clicks"] < result["baseline_clicks"]
    )
    print(f"model r_precision {result['r_precision']} ndcg {result['ndcg']} clicks {result['clicks']} | "
          f"baseline {result['baseline_r_precision']} {result['baseline_ndcg']} {result['baseline_clicks']}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

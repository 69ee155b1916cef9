"""Benchmark the Spotify chain's logic in one process (no Dagster), step by step.

    .venv/bin/python bench/spotify_logic.py [--size 80k] [--seed 0]

Generates the synthetic MPD once under bench/.cache/<size>-seed<seed>/ (reused later), runs
every asset through spotify_mpc.steps, and prints wall and CPU time per step, an estimate
of each step's largest task memory, and the metrics of the model and of the two baselines
(the same candidates by co-occurrence alone; the most popular tracks), per category and
overall, with the model's margin over the co-occurrence-only ranking.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # 1-cpu tasks; BLAS threads only contend

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spotify_mpc import generate  # noqa: E402
from spotify_mpc.inprocess import Timings, run_contest  # noqa: E402
from spotify_mpc.sizes import get_size  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"


def overall_summary(table) -> str:
    """The overall row per method, and whether the learned ranker beats co-occurrence alone."""
    overall = table[table["category"] == "overall"].set_index("method")
    lines = [f"{'overall':<14} {'r_precision':>11} {'ndcg':>8} {'clicks':>7}"]
    lines += [f"{m:<14} {r['r_precision']:11.4f} {r['ndcg']:8.4f} {r['clicks']:7.2f}" for m, r in overall.iterrows()]
    if {"model", "cooccurrence"} <= set(overall.index):
        gain = {k: overall.at["model", k] / overall.at["cooccurrence", k] - 1 for k in ("r_precision", "ndcg")}
        beats = all(v > 0 for v in gain.values())
        lines.append(f"model vs co-occurrence only: R-precision {gain['r_precision']:+.1%}, NDCG {gain['ndcg']:+.1%} "
                     f"({'the model beats it' if beats else 'the model does NOT beat it'})")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="80k")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", action="store_true", help="print every task as it finishes")
    ap.add_argument("--save", action="store_true", help="pickle the outputs to bench/.cache for profiling")
    args = ap.parse_args()
    size = get_size(args.size)
    raw = CACHE / f"{size.name}-seed{args.seed}"
    done = raw / ".complete"
    if not done.exists():
        t0 = time.perf_counter()
        generate.main(["--slices", str(size.slices), "--out", str(raw), "--seed", str(args.seed),
                       "--challenge-size", str(size.official_challenge_size),
                       "--playlists-per-slice", str(size.playlists_per_slice)])
        done.write_text("ok\n")
        print(f"generation: {time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    timings = Timings(verbose=args.verbose)
    out = run_contest(raw, size, timings)
    total = time.perf_counter() - t0
    print(timings.table().to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    print(f"\nwhole chain: {total:.1f}s wall, {sum(r['cpu_seconds'] for r in timings.rows):.1f}s cpu "
          f"(size {size.name}, {size.slices} slices, {size.n_parts} parts)\n")
    print(out["evaluation"].markdown)
    print(overall_summary(out["evaluation"].table))
    if args.save:
        import pickle

        out.pop("timings", None)
        with open(CACHE / f"{size.name}-seed{args.seed}-outputs.pkl", "wb") as f:
            pickle.dump(out, f, protocol=pickle.HIGHEST_PROTOCOL)
    print(f"model: {out['model']['rows']} training rows, {out['model']['positives']} positives, "
          f"loss per epoch {[round(x, 4) for x in out['model']['train_loss']]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time (and optionally profile) the serial tail of the Spotify chain on saved outputs.

    .venv/bin/python bench/spotify_logic.py --size 80k --save     # once: bench/.cache/80k-seed0-outputs.pkl
    .venv/bin/python bench/spotify_tail.py [--size 80k] [--profile DIR] [--repeat 1]

Runs `model`, `submission`, `evaluation` and `challenge_submission` through spotify_mpc.steps
with the inputs `--save` pickled (challenge_lists is rebuilt from the saved CSV), prints wall
and CPU seconds per step, and checks every output is identical to the saved one (model
weights and losses, submission frame, evaluation table/Markdown/PNG, CSV text), so a speed-up
that changes a bit is caught. --profile DIR writes one cProfile .pstats file (CPU time) per step there.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pickle
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the chain's 1-cpu tasks run

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from spotify_mpc import steps  # noqa: E402
from spotify_mpc.sizes import get_size  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"


def lists_from_csv(text: str, tracks: pd.DataFrame) -> pd.DataFrame:
    """challenge_lists' rows (pid, rank, track_id) back from the official CSV they made."""
    ids = pd.Series(np.arange(len(tracks)), index=tracks["track_uri"].to_numpy())
    pids, uris = [], []
    for line in text.splitlines():
        if not line or line.startswith(("#", "team_info")):
            continue
        fields = [f.strip() for f in line.split(",")]
        pids.append(int(fields[0]))
        uris.append(fields[1:])
    k = len(uris[0])
    return pd.DataFrame({"pid": np.repeat(np.array(pids, np.int64), k),
                         "rank": np.tile(np.arange(1, k + 1, dtype=np.int16), len(pids)),
                         "track_id": ids.loc[[u for row in uris for u in row]].to_numpy().astype(np.int32)})


def same(a, b) -> bool:
    if isinstance(a, pd.DataFrame):
        return a.equals(b) and list(a.dtypes) == list(b.dtypes)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if hasattr(a, "table") and hasattr(a, "png"):
        return same(a.table, b.table) and a.markdown == b.markdown and a.png == b.png
    return a == b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="80k")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", type=Path, help="write <step>.pstats per step into this folder")
    ap.add_argument("--steps", default="model,submission,evaluation,challenge_submission")
    args = ap.parse_args()
    size = get_size(args.size)
    with open(CACHE / f"{size.name}-seed{args.seed}-outputs.pkl", "rb") as f:
        saved = pickle.load(f)
    official = (CACHE / f"{size.name}-seed{args.seed}" / "challenge_set.json").read_bytes()
    tracks = saved["tracks"]

    def lazy(objects):
        return {k: (lambda v=v: v) for k, v in objects.items()}

    lists = lists_from_csv(saved["challenge_submission"], tracks)
    calls = {
        "model": lambda: steps.model(lazy(saved["training_samples"]), size),
        "submission": lambda: steps.submission(lazy(saved["test_samples"]), saved["model"], saved["challenge_set"],
                                               tracks),
        "evaluation": lambda: steps.evaluation(saved["submission"], saved["challenge_set"], tracks,
                                               lazy(saved["test_samples"])),
        "challenge_submission": lambda: steps.challenge_submission(official, tracks, lazy({"0": lists})),
    }
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    rows = []
    for step in args.steps.split(","):
        prof = cProfile.Profile(time.process_time) if args.profile else None  # CPU: the box is shared
        t0, c0 = time.perf_counter(), time.process_time()
        out = prof.runcall(calls[step]) if prof else calls[step]()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if prof:
            prof.dump_stats(str(args.profile / f"{step}.pstats"))
        identical = same(out, saved[step])
        rows.append({"step": step, "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "identical": identical})
        print(f"{step:<22} {wall:7.2f}s wall {cpu:7.2f}s cpu  identical to saved: {identical}", flush=True)
    total = sum(r["seconds"] for r in rows)
    print(f"tail total: {total:.2f}s wall, {sum(r['cpu_seconds'] for r in rows):.2f}s cpu "
          f"(cpu/wall {sum(r['cpu_seconds'] for r in rows) / max(total, 1e-9):.2f})")
    print(json.dumps({"size": size.name, "tail_seconds": round(total, 2), "steps": rows,
                      "all_identical": all(r["identical"] for r in rows)}))
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The whole chain in one process, through `steps`, with no Dagster: for tests and benchmarks.

Every step gets exactly the inputs its asset would get; reductions get lazy loaders over
objects held in memory here. Per-step wall time and peak RSS growth are recorded so the
task sizes in `steps`' table can be measured rather than guessed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from spotify_mpc import steps
from spotify_mpc.cooccurrence import KINDS
from spotify_mpc.mpd_io import slice_range
from spotify_mpc.sizes import ContestSize


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _reset_peak() -> bool:
    try:  # Linux: writing 5 resets the peak RSS (VmHWM) to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _mib(obj: Any) -> float:
    if isinstance(obj, pd.DataFrame):
        return obj.memory_usage(deep=True).sum() / 2**20
    if isinstance(obj, (bytes, str)):
        return len(obj) / 2**20
    if isinstance(obj, dict) and obj and all(callable(v) for v in obj.values()):
        return max(_mib(v()) for v in obj.values())  # lazy inputs: one loaded at a time
    return 0.0


@dataclass
class Timings:
    """Per task: wall and CPU seconds, and an estimate of the task's own peak memory.

    task_mib = (peak RSS during the call - RSS before it) + the size of its inputs (for lazy
    inputs, the largest one), i.e. roughly what a pod running only this task would need.
    """

    rows: list[dict] = field(default_factory=list)
    verbose: bool = False

    def run(self, step: str, fn: Callable[..., Any], *args, **kwargs) -> Any:
        inputs = sum(_mib(a) for a in (*args, *kwargs.values()))
        can_reset = _reset_peak()
        before = _status_mib("VmRSS")
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        peak = _status_mib("VmHWM") if can_reset else float("nan")
        self.rows.append({"step": step, "seconds": wall, "cpu_seconds": cpu,
                          "task_mib": max(peak - before, 0.0) + inputs})
        if self.verbose:
            print(f"  {step:<24} {wall:7.1f}s wall {cpu:7.1f}s cpu {self.rows[-1]['task_mib']:7.0f} MiB", flush=True)
        return out

    def table(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows)
        return df.groupby("step", sort=False).agg(
            tasks=("seconds", "size"), seconds=("seconds", "sum"), cpu_seconds=("cpu_seconds", "sum"),
            max_task_seconds=("seconds", "max"), max_task_mib=("task_mib", "max")).reset_index()


def _lazy(objects: dict) -> dict:
    return {k: (lambda v=v: v) for k, v in objects.items()}


def run_contest(raw_dir: Path, size: ContestSize, timings: Timings | None = None,
                with_official: bool = True) -> dict[str, Any]:
    """Run every asset for the slices in raw_dir; returns the outputs by asset name."""
    t = timings or Timings()
    files = sorted(Path(raw_dir).glob("mpd.slice.*.json"), key=lambda p: slice_range(p.name)[0])
    by_key = {f"{a}-{b}": p for p in files for a, b in [slice_range(p.name)]}
    parts = steps.part_keys(list(by_key), size.slices_per_part)
    n_parts = len(parts)
    roles = steps.PartRoles.of(n_parts)
    pls, ptr = {}, {}
    for k, keys in parts.items():  # one part's parsed slices in memory at a time
        slices = {s: t.run("mpd_slices", steps.mpd_slices, by_key[s].read_bytes(), by_key[s].name) for s in keys}
        pls[k] = t.run("playlists", steps.playlists, _lazy(slices))
        ptr[k] = t.run("part_tracks", steps.part_tracks, _lazy(slices))
        del slices
    tracks = t.run("tracks", steps.tracks, _lazy(ptr), n_parts)
    del ptr
    train = {k: t.run("train_playlists", steps.train_playlists, pls[k], tracks) for k in parts}
    del pls
    test_cs = t.run("challenge_set", steps.challenge_set, train[roles.test], size)
    train_cs = t.run("training_challenge_set", steps.training_challenge_set, train[roles.training], size)
    official_path = Path(raw_dir) / "challenge_set.json"
    official = official_path.read_bytes() if with_official and official_path.exists() else None
    keys = t.run("challenge_keys", steps.challenge_keys, test_cs, train_cs, tracks, official)
    cooc = {}
    for kind in KINDS:  # one kind's partials in memory at a time
        partials = {k: t.run("cooccurrence_partials", steps.cooccurrence_partials, train[k], k, kind, keys,
                             size, n_parts) for k in parts}
        for s in range(size.cooc_shards):
            cooc[(kind, s)] = t.run("cooccurrence", steps.cooccurrence, _lazy(partials), s, size)
        del partials
    artist_pl = t.run("artist_playlists", steps.artist_playlists, tracks, _lazy(train), n_parts)
    gen_test = t.run("generic_features", steps.generic_features, test_cs, tracks, artist_pl)
    gen_train = t.run("generic_features", steps.generic_features, train_cs, tracks, artist_pl)
    train_samples = {str(s): t.run("training_samples", steps.training_samples, train_cs, gen_train, tracks,
                                   _lazy(cooc), s, size) for s in range(size.train_sample_shards)}
    test_samples = {str(s): t.run("test_samples", steps.test_samples, test_cs, gen_test, tracks, _lazy(cooc), s, size)
                    for s in range(size.test_sample_shards)}
    trained = t.run("model", steps.model, _lazy(train_samples), size)
    sub = t.run("submission", steps.submission, _lazy(test_samples), trained, test_cs, tracks)
    ev = t.run("evaluation", steps.evaluation, sub, test_cs, tracks, _lazy(test_samples))
    out = {"tracks": tracks, "challenge_set": test_cs, "training_challenge_set": train_cs, "challenge_keys": keys,
           "cooccurrence": cooc,
           "artist_playlists": artist_pl, "training_samples": train_samples, "test_samples": test_samples,
           "model": trained, "submission": sub, "evaluation": ev, "timings": t}
    if official is not None:
        lists = {str(s): t.run("challenge_lists", steps.challenge_lists, official, tracks, artist_pl, _lazy(cooc),
                               trained, s, size) for s in range(size.official_shards)}
        out["challenge_submission"] = t.run("challenge_submission", steps.challenge_submission, official, tracks,
                                            _lazy(lists))
    return out

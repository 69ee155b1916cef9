"""What one partition costs besides its work: N single-partition runs through `ktx materialize`
(each run created in the instance, executed in a process forked from the warm server, its
events written, its output stored and checked), one run at a time.

    .venv/bin/python bench/run_overhead.py [--partitions 30]

Runs Hello World (three checks per partition) and the floor, a transformation over the same
files that does nothing (bench/overhead_defs.py), each on the shipped local instance
(deploy/local/dagster.yaml: ktx_dagster/local_storage.py) and on Dagster's default SQLite
storage, in one invocation so the ratios compare like with like on a noisy machine.

Reported per case: seconds per partition (second run created -> last run ended, over N - 1:
the CLI's start-up and the fork server's, paid by the first run, are reported apart as
first_run_seconds), CPU-seconds per partition (every process of the CLI's
process tree, start-up included, reaped through this process as child subreaper: bench/cpu.py),
events written per run. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE), str(REPO / "tests" / "ui")]

from cpu import become_subreaper, children_cpu, reap_all, yardstick_seconds  # noqa: E402
from dagster_stack import write_inputs  # noqa: E402


def run_case(task: str, storage: str, partitions: int, root: Path) -> dict:
    home, data = root / f"{task}-{storage}" / "home", root / f"{task}-{storage}" / "data"
    home.mkdir(parents=True)
    config = yaml.safe_load((REPO / "deploy" / "local" / "dagster.yaml").read_text())
    if storage == "dagster":
        config.pop("run_storage")
        config.pop("event_log_storage")
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    write_inputs(data, [f"part_{i}" for i in range(1, partitions + 1)])
    env = {**os.environ, "DAGSTER_HOME": str(home), "KTX_DATA_DIR": str(data), "KTX_MAX_CONCURRENT": "1",
           "PYTHONPATH": str(REPO)}
    cli = [sys.executable, "-m", "ktx_dagster"]
    subprocess.run([*cli, "sync", "-f", str(HERE / "overhead_defs.py")], env=env, cwd=REPO, check=True,
                   capture_output=True)
    before = children_cpu()
    proc = subprocess.run([*cli, "materialize", "-f", str(HERE / "overhead_defs.py"), "--select", task],
                          env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout
    reap_all()  # the CLI's fork server and anything it left, re-parented here
    cpu = children_cpu() - before
    if proc.returncode != 0:
        sys.exit(f"{task} on {storage} storage failed:\n{out[-3000:]}")
    os.environ["DAGSTER_HOME"] = str(home)
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        runs = sorted(instance.get_run_records(), key=lambda r: r.create_timestamp)
        second = runs[1].create_timestamp.timestamp()
        last = max(r.end_time for r in runs)
        events = [len(instance.all_logs(r.dagster_run.run_id)) for r in runs]
        task_seconds = [r.asset_materialization.metadata["task_seconds"].value
                        for r in instance.fetch_materializations(dg.AssetKey(task), limit=10_000).records]
    return {
        "task": task, "storage": storage, "runs": len(runs),
        "seconds_per_partition": round((last - second) / (len(runs) - 1), 3),
        "first_run_seconds": round(runs[0].end_time - runs[0].create_timestamp.timestamp(), 2),
        "task_seconds_per_partition": round(sum(task_seconds) / len(task_seconds), 3),
        "cpu_seconds_per_partition": round(cpu / len(runs), 3),
        "events_per_run": round(sum(events) / len(events), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, default=30)
    args = parser.parse_args()
    become_subreaper()
    root = Path(tempfile.mkdtemp(prefix="ktx-bench-overhead-"))
    load = os.getloadavg()[0]
    print(f"bench: {args.partitions} single-partition runs per case, one at a time, cpus={os.cpu_count()}, "
          f"load={load:.1f}", flush=True)
    cases = []
    try:
        for task in ("empty_task", "hello_world"):
            for storage in ("ktx", "dagster"):
                row = run_case(task, storage, args.partitions, root)
                cases.append(row)
                print(f"  {task:<12} {storage:<8} {row['seconds_per_partition']:.3f} s/partition "
                      f"(task {row['task_seconds_per_partition']:.3f} s), {row['cpu_seconds_per_partition']:.3f} "
                      f"CPU-s/partition, {row['events_per_run']} events/run", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    by = {(c["task"], c["storage"]): c for c in cases}
    floor = by[("empty_task", "ktx")]
    hello = by[("hello_world", "ktx")]
    result = {
        "bench": "run_overhead",
        "partitions": args.partitions,
        "floor_seconds_per_partition": floor["seconds_per_partition"],
        "floor_cpu_seconds_per_partition": floor["cpu_seconds_per_partition"],
        "hello_world_seconds_per_partition": hello["seconds_per_partition"],
        "hello_world_overhead_seconds_per_partition": round(
            hello["seconds_per_partition"] - hello["task_seconds_per_partition"], 3),
        "dagster_storage_over_ktx_storage": round(
            by[("hello_world", "dagster")]["seconds_per_partition"] / hello["seconds_per_partition"], 2),
        "target_overhead_seconds_per_partition": 0.5,
        "cases": cases,
        "cpus": os.cpu_count(),
        "yardstick_seconds": yardstick_seconds(),
        "load_avg_1m_at_start": round(load, 1),
        "load_avg_1m_at_end": round(os.getloadavg()[0], 1),
    }
    result["target_met"] = result["hello_world_overhead_seconds_per_partition"] <= 0.5
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Backfill throughput through the real daemon: N Hello World partitions, one run each.

    python bench/backfill.py [--partitions 100] [--concurrency 2] [--daemon stock|fast]
                             [--launcher warm|default] [--executor auto|multiprocess]
                             [--deployment local|emulated-k8s] [--pod-runtime process|control-plane]
                             [--storage ktx|dagster|postgres] [--window SECONDS]
                             [--run-chunk-size N] [--keep]

Starts dagster-webserver + dagster-daemon on loopback over a temporary DAGSTER_HOME (the
repo's deploy/local/dagster.yaml: queued runs, KTX_MAX_CONCURRENT_RUNS at once) and a
temporary data dir with N input files, launches one backfill of every partition through
GraphQL and waits until the daemon marks it complete.

Reported:
- partitions_per_minute: N / wall time * 60, wall = launch -> backfill marked complete;
- overhead_seconds_per_partition: (wall - task time) / N, where task time is the sum of the
  tasks' own seconds (`task_seconds` metadata of each materialization) divided by the
  concurrency, i.e. the wall time the tasks alone would take at that concurrency;
- cpu_seconds_per_partition: CPU time of all the deployment's processes from launch to
  completion (daemon and webserver polling included) per partition, sampled from /proc: what
  the machine pays per partition, whatever else is running on it;
- run-level detail: mean run duration (run start -> end, i.e. process start-up, step
  processes, checks, event writes), mean queue wait (created -> started), peak concurrency.

--daemon stock (default) runs the unmodified dagster-daemon, whose backfill loop wakes every
30 s (so up to ~30 s before the first run is submitted and up to ~30 s after the last run
ends before the backfill is marked complete); --daemon fast lowers that loop to 2 s as the UI
tests do. --launcher default swaps the project's WarmRunLauncher (run processes forked from a
warm server) for Dagster's DefaultRunLauncher (a new interpreter per run, started by the code
server); --executor multiprocess sets KTX_LOCAL_EXECUTOR=multiprocess (a process per step
even when a run is a chain). Both show what the defaults save. --deployment emulated-k8s runs
the same backfill with KTX_DEPLOYMENT=minikube against the emulated cluster
(ktx_dagster/testing/k8s_emulator/): every step is a Kubernetes Job whose pod is a local
`dagster api execute_step` process, i.e. a fresh interpreter per step as in a real pod.
--pod-runtime control-plane makes those pods start at once (forked from a warm interpreter,
ktx_dagster/testing/k8s_emulator/warm_pods.py): what remains per partition is Dagster's and
the API server's own work, measured as Dagster CPU-seconds, pod CPU-seconds, Jobs and Pods,
Kubernetes API calls by kind, and event-log rows (docs/scale.md, "The Kubernetes path at scale").
--window SECONDS ends the measurement after that long even if the backfill is not done (one
too long to run to the end here): figures are then per *finished* partition, and the daemon's
pace creating runs is reported per tenth of the runs it created, which shows whether it slows
as the backfill and the run queue grow. The progress lines and `backfill_record_peak_bytes`
give the size of the backfill's stored record, which holds the run requests still to submit;
--run-chunk-size sets how many runs the daemon submits between rewrites of it.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "ui"), str(REPO / "tests" / "k8s")]

from cpu import CpuSampler, children_cpu, yardstick_seconds  # noqa: E402
from dagster_stack import DagsterStack, write_inputs  # noqa: E402

def _api_calls(requests: list[tuple[str, str]], n: int) -> dict:
    """Kubernetes API requests per partition, by verb and resource, from the emulated API
    server's request log (every request it answered during the backfill)."""
    import collections
    from urllib.parse import urlsplit

    from ktx_dagster.testing.k8s_emulator.http_api import _parse_path

    counts: collections.Counter = collections.Counter()
    for method, path in requests:
        split = urlsplit(path)
        try:
            parsed = _parse_path(split.path)
        except Exception:  # a path the server answered with 404
            parsed = None
        plural, name, sub = (parsed[0], parsed[2], parsed[3]) if parsed else (split.path, None, None)
        verb = {"POST": "create", "PUT": "replace", "PATCH": "patch", "DELETE": "delete"}.get(method)
        if verb is None:
            verb = "watch" if "watch=" in split.query else ("get" if name else "list")
        counts[f"{verb} {plural}{'/' + sub if sub else ''}"] += 1
    return {"api_calls_per_partition": round(sum(counts.values()) / n, 1),
            "api_calls_by_kind_per_partition": {k: round(v / n, 2) for k, v in counts.most_common()}}


@contextlib.contextmanager
def _instance(home: Path):
    """The stack's instance, read from this process (DAGSTER_HOME set for the duration)."""
    import dagster as dg

    old = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            yield instance
    finally:
        if old is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = old


def _event_rows(home: Path, run_ids: set[str], n: int) -> float | None:
    """Event log rows the backfill's runs wrote (every event is one insert), per partition."""
    try:
        with _instance(home) as instance:
            return round(sum(len(instance.all_logs(run_id)) for run_id in run_ids) / n, 1)
    except Exception as exc:  # a count, not the bench's result: say why it is missing
        print(f"  event rows not counted: {exc!r}", file=sys.stderr)
        return None


def _backfill_record_bytes(home: Path, backfill_id: str) -> int | None:
    """Size of the backfill's stored record (its serialized PartitionBackfill): the daemon
    reads it on every loop and rewrites it after every chunk of runs it submits, and while
    runs remain to be submitted it carries their run requests."""
    from dagster import serialize_value

    try:
        with _instance(home) as instance:
            backfill = instance.get_backfill(backfill_id)
            return len(serialize_value(backfill)) if backfill is not None else None
    except Exception as exc:  # a size, not the bench's result: say why it is missing
        print(f"  backfill record not measured: {exc!r}", file=sys.stderr)
        return None


def _of_runs(objects: list[dict], run_ids: set[str]) -> list[dict]:
    return [o for o in objects if (o["metadata"].get("labels") or {}).get("dagster/run-id") in run_ids]


def _pace_by_tenth(created: list[float]) -> list[float] | None:
    """Runs created per second in each tenth of the created runs, in order: a daemon that
    slows as the backfill grows shows falling numbers."""
    if len(created) < 20:
        return None
    tenth = len(created) // 10
    paces = []
    for i in range(10):
        chunk = created[i * tenth:(i + 1) * tenth + 1]
        span = chunk[-1] - chunk[0]
        paces.append(round((len(chunk) - 1) / span, 2) if span > 0 else None)
    return paces


def _peak_rss_mib(pid: int) -> float | None:
    """Peak resident memory of one process (VmHWM), in MiB; None once it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # run the `finally` below: stop webserver and daemon


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=int(os.environ.get("KTX_MAX_CONCURRENT_RUNS", "2")))
    parser.add_argument("--daemon", choices=("stock", "fast"), default="stock")
    parser.add_argument("--launcher", choices=("warm", "default"), default="warm")
    parser.add_argument("--executor", choices=("auto", "multiprocess"), default="auto")
    parser.add_argument("--deployment", choices=("local", "emulated-k8s"), default="local")
    parser.add_argument("--pod-runtime", choices=("process", "control-plane"), default="process",
                        help="emulated-k8s: how the emulated kubelet runs pods (control-plane: forked, warm)")
    parser.add_argument("--storage", choices=("ktx", "dagster", "postgres"), default="ktx",
                        help="dagster: Dagster's default SQLite storage instead of ktx_dagster/local_storage.py; "
                        "postgres: the shared instance's storage (deploy/minikube/dagster.yaml) on a throwaway server")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--window", type=float, default=None,
                        help="end the measurement after this many seconds, done or not (figures per finished partition)")
    parser.add_argument("--run-chunk-size", type=int, default=None,
                        help="runs the backfill daemon submits between writes of the backfill record "
                        "(Dagster's DAGSTER_ASSET_BACKFILL_RUN_CHUNK_SIZE; its default is 25)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, instance)")
    args = parser.parse_args(argv)

    result: dict | None = None
    root = Path(tempfile.mkdtemp(prefix="ktx-bench-backfill-"))
    cleanup = contextlib.ExitStack()
    extra_env = {"KTX_LOCAL_EXECUTOR": args.executor}
    if args.run_chunk_size is not None:
        extra_env["DAGSTER_ASSET_BACKFILL_RUN_CHUNK_SIZE"] = str(args.run_chunk_size)
    data_dir = root / "stack" / "data"
    cluster = None
    pg = None
    if args.storage == "postgres":
        from ktx_dagster.testing.postgres import throwaway_postgres

        pg = cleanup.enter_context(throwaway_postgres())
        extra_env.update(pg.dagster_env())
        os.environ.update(pg.dagster_env())  # this process reads the instance too (_event_rows)
    if args.deployment == "emulated-k8s":
        from k8s_harness import project_env, seed_cluster_config
        from ktx_dagster.testing.pytest_plugin import k8s_test_cluster

        cluster = cleanup.enter_context(k8s_test_cluster(root / "k8s", runtime=args.pod_runtime))
        if pg is None:
            seed_cluster_config(cluster)
        else:  # the pods reach the same PostgreSQL, as deploy/minikube's ConfigMap and Secret say
            seed_cluster_config(
                cluster, instance_yaml=(REPO / "deploy" / "minikube" / "dagster.yaml").read_text(),
                instance_env={k: v for k, v in pg.dagster_env().items() if k != "DAGSTER_PG_PASSWORD"},
                pg_password=pg.password)
        data_dir = cluster.data_dir / "bench"  # the node's /mnt/data/bench
        extra_env.update(project_env(cluster, data_dir, "/mnt/data/bench"))
    stack = DagsterStack(
        root / "stack",
        max_concurrent_runs=args.concurrency,
        daemon_interval=None if args.daemon == "stock" else 2,
        sensor_interval=30,
        extra_env=extra_env,
    )
    config = yaml.safe_load((stack.home / "dagster.yaml").read_text())
    if args.launcher == "default":
        del config["run_launcher"]  # Dagster's DefaultRunLauncher
    if args.deployment == "emulated-k8s" and args.storage == "ktx":
        # Its pods are local processes with a DAGSTER_HOME of their own that read this instance
        # through the run's instance ref; Dagster's default storage writes absolute folders
        # into the ref, ktx_dagster.local_storage resolves them from DAGSTER_HOME (a real
        # cluster shares PostgreSQL instead: deploy/minikube/dagster.yaml).
        args.storage = "dagster"
    if args.storage in ("dagster", "postgres"):
        config.pop("run_storage", None)  # Dagster's default SQLite storage
        config.pop("event_log_storage", None)
    if args.storage == "postgres":
        config.pop("schedule_storage", None)
        config["storage"] = yaml.safe_load((REPO / "deploy" / "minikube" / "dagster.yaml").read_text())["storage"]
    (stack.home / "dagster.yaml").write_text(yaml.safe_dump(config))
    keys = [f"part_{i}" for i in range(1, args.partitions + 1)]
    write_inputs(data_dir, keys)
    stack.sync_partitions()
    print(f"bench: {args.partitions} partitions, {args.concurrency} runs at once, daemon={args.daemon}, "
          f"deployment={args.deployment}{'/' + args.pod_runtime if cluster else ''}, launcher={args.launcher}, executor={args.executor}, storage={args.storage}, cpus={os.cpu_count()}, load={os.getloadavg()[0]:.1f}", flush=True)
    try:
        t_start = time.monotonic()
        stack.start(timeout=300)
        startup = time.monotonic() - t_start
        print(f"  webserver + daemon ready in {startup:.1f}s", flush=True)
        sampler = None
        if os.path.exists("/proc/self/stat"):
            # The webserver's and daemon's process groups (run processes included) are sampled
            # live; emulated pods are this process's children: exact through RUSAGE_CHILDREN.
            sampler = CpuSampler({p.pid for p in stack.procs.values()})
            sampler.sample()
            cpu_before = sum(sampler.seen.values())
            groups_before = sampler.by_group()
            children_before = children_cpu()
            forked_before = cluster.emulator.pod_cpu_seconds if cluster is not None and cluster.emulator else 0.0
            sampler.start()

        requests_before = len(cluster.emulator.requests) if cluster is not None and cluster.emulator else 0
        t0_wall = time.time()
        t0 = time.monotonic()
        backfill_id = stack.launch_backfill(title=f"bench {args.partitions} partitions")
        last_report = time.monotonic()
        record_peak = 0
        window_ended = False
        while (status := stack.backfill_status(backfill_id)) not in stack.BACKFILL_DONE:
            if args.window is not None and time.monotonic() - t0 > args.window:
                window_ended = True
                break
            if time.monotonic() - t0 > args.timeout:
                raise TimeoutError(f"backfill {backfill_id} not done after {args.timeout}s")
            if time.monotonic() - last_report > 60:
                counts = stack.backfill_run_counts(backfill_id)
                record = _backfill_record_bytes(stack.home, backfill_id)
                record_peak = max(record_peak, record or 0)
                print(f"  {time.monotonic() - t0:6.0f}s: {counts['finished']}/{args.partitions} runs finished, "
                      f"{counts['created']} created, backfill record "
                      f"{'?' if record is None else f'{record / 1e6:.2f}'} MB", flush=True)
                last_report = time.monotonic()
            time.sleep(1)
        wall = time.monotonic() - t0
        peak_rss = {name: _peak_rss_mib(proc.pid) for name, proc in stack.procs.items()}
        dagster_cpu = sampler.total() - cpu_before if sampler else None
        # each of webserver and daemon leads a process group: its code servers and the run
        # processes it launched (the daemon launches the backfill's) are in it
        group_cpu = ({name: sampler.by_group().get(proc.pid, 0.0) - groups_before.get(proc.pid, 0.0)
                      for name, proc in stack.procs.items()} if sampler else None)
        # process pods are this process's children; control-plane pods are counted by the kubelet
        forked = (cluster.emulator.pod_cpu_seconds if cluster is not None and cluster.emulator else 0.0) - forked_before
        pods_cpu = children_cpu() - children_before + forked if sampler else None
        cpu = dagster_cpu + pods_cpu if sampler else None
        state = stack.backfill(backfill_id)
        created_runs = state["runs"]
        # A windowed measurement counts what finished inside the window; the API calls of the
        # (at most --concurrency) runs still in flight are counted too: a bias of under
        # concurrency / finished.
        window_end = t0_wall + wall
        runs = ([r for r in created_runs if r["status"] in ("SUCCESS", "FAILURE") and (r.get("endTime") or 0) <= window_end]
                if window_ended else created_runs)
        n = len(runs) if window_ended else args.partitions
        if n == 0:
            raise RuntimeError(f"no run finished within the {args.window}s window")
        if group_cpu is not None:
            group_cpu = {name: round(v / n, 2) for name, v in group_cpu.items()}
        ids = {r["id"] for r in runs}
        task_seconds = [
            e["metadata"].get("task_seconds", 0.0) for e in stack.materializations() if e["runId"] in ids
        ]
        durations = [r["endTime"] - r["startTime"] for r in runs if r.get("startTime") and r.get("endTime")]
        waits = [r["startTime"] - r["creationTime"] for r in runs if r.get("startTime") and r.get("creationTime")]
        last_end = max((r["endTime"] for r in runs if r.get("endTime")), default=t0_wall)
        first_created = min((r["creationTime"] for r in runs if r.get("creationTime")), default=t0_wall)
        created = sorted(r["creationTime"] for r in created_runs if r.get("creationTime"))
        task_time = sum(task_seconds) / args.concurrency
        result = {
            "bench": "backfill",
            "status": status,
            "partitions": args.partitions,
            **({"window_seconds": args.window, "runs_created": len(created_runs), "runs_finished": n,
                "runs_failed": sum(r["status"] == "FAILURE" for r in runs),
                "note_window": "figures per partition are per finished partition within the window"}
               if window_ended else {}),
            "materialized": len(task_seconds),
            "max_concurrent_runs": args.concurrency,
            "daemon": args.daemon,
            "deployment": args.deployment,
            **({"pod_runtime": args.pod_runtime} if args.deployment == "emulated-k8s" else {}),
            "launcher": args.launcher,
            "executor": args.executor,
            "storage": args.storage,
            "wall_seconds": round(wall, 1),
            "partitions_per_minute": round(n / wall * 60, 1),
            "task_seconds_total": round(sum(task_seconds), 2),
            "overhead_seconds_per_partition": round((wall - task_time) / n, 2),
            "seconds_to_first_run_submitted": round(first_created - t0_wall, 1),
            # the backfill daemon's pace creating the runs (they then wait in the run queue)
            "runs_created_per_second": (round((len(created) - 1) / (created[-1] - created[0]), 2)
                                        if len(created) > 1 and created[-1] > created[0] else None),
            "runs_created_per_second_by_tenth": _pace_by_tenth(created),
            "run_chunk_size": args.run_chunk_size,  # None: Dagster's own default
            # sampled with the progress lines (every 60 s): None when the run was shorter
            "backfill_record_peak_bytes": record_peak or None,
            "seconds_last_run_end_to_complete": round(t0_wall + wall - last_end, 1),
            "runs_span_seconds_per_partition": round((last_end - first_created) / n, 2),
            "mean_run_seconds": round(statistics.mean(durations), 2) if durations else None,
            "mean_queue_wait_seconds": round(statistics.mean(waits), 1) if waits else None,
            "peak_concurrency": stack.max_overlap(runs),
            "startup_seconds": round(startup, 1),
            "cpu_seconds_per_partition": round(cpu / n, 2) if cpu is not None else None,
            "cpus": os.cpu_count(),
            "yardstick_seconds": yardstick_seconds(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 1),
            # Split: the webserver's and daemon's process groups (daemon, run processes, code
            # servers) against this process's children (emulated pods: 0 for a local backfill).
            "dagster_cpu_seconds_per_partition": round(dagster_cpu / n, 2) if sampler else None,
            "pod_cpu_seconds_per_partition": round(pods_cpu / n, 2) if sampler else None,
            "dagster_cpu_seconds_per_partition_by_process": group_cpu,
            "event_log_rows_per_partition": _event_rows(stack.home, ids, n),
            "peak_rss_mib": peak_rss,
            **(_api_calls(cluster.emulator.requests[requests_before:], n)
               if args.deployment == "emulated-k8s" and cluster.emulator is not None else {}),
            # Jobs and Pods of the counted runs (the k8s executor labels each with its run id)
            **({"jobs_per_partition": round(len(_of_runs(cluster.emulator.jobs(), ids)) / n, 2),
                "pods_per_partition": round(len({p["metadata"]["uid"] for p in _of_runs(cluster.emulator.pods(), ids)})
                                            / n, 2)}
               if args.deployment == "emulated-k8s" and cluster.emulator is not None else {}),
            "note": "cpu_seconds_per_partition: CPU of all the deployment's processes from launch to "
            "completion (polling included) per partition, independent of other load; on an idle "
            "machine the wall time per partition is at least that / min(cpus, concurrency)",
        }
    except BaseException:
        print(stack.dump_logs(60), file=sys.stderr)
        raise
    finally:
        stack.stop()
        cleanup.close()
        if not args.keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"  kept {root}", file=sys.stderr)
    done = f"{result['runs_finished']} of " if "runs_finished" in result else ""
    print(f"  {result['status']}: {done}{args.partitions} partitions in {result['wall_seconds']}s "
          f"({result['partitions_per_minute']}/min), overhead {result['overhead_seconds_per_partition']}s/partition, "
          f"mean run {result['mean_run_seconds']}s")
    print(json.dumps(result))
    if "runs_finished" in result:  # windowed: succeeded if nothing inside the window failed
        return 0 if result["runs_failed"] == 0 else 1
    return 0 if result["status"] == "COMPLETED_SUCCESS" else 1


if __name__ == "__main__":
    sys.exit(main())

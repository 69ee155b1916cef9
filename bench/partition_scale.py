"""Registering file partitions and planning a backfill of all of them, at 1,000 .. 100,000 files.

    python bench/partition_scale.py [--n 1000 10000 100000] [--backend sqlite postgres]
                                    [--sqlite-max-variables 32766] [--phases sync sensor steady backfill]

A code location of its own, made the way a user makes one (`@transformation` over a
`FilePartitions("scale_files", "in", "part_*.txt")`, `definitions_for`), and N empty input
files in a temporary data dir. For each N and backend, each phase runs in a process of its own
(its wall time, CPU time and peak RSS come from the OS, `wait4`):

- sync:    `ktx sync -f location.py` registering the N new files (the CLI, as a user runs it);
- sensor:  on a second, empty instance, the file sensor's first tick (Dagster's public
           `build_sensor_context`), then its dynamic-partition requests applied the way the
           sensor daemon applies them (dagster/_daemon/sensor.py in 1.13: `has_dynamic_partition`
           per key, then `add_dynamic_partitions`); `sensor2` is a tick with nothing new once
           every file is handled (the cost paid every 30 s): a first tick adopting the keys the
           sensor phase registered (adopt_s), then the quiet tick with its cursor;
- steady:  a second `ktx sync` on the first instance, nothing new;
- backfill: the UI's "Materialize all": the `launchPartitionBackfill` GraphQL mutation with
           `allPartitions`, answered in process by a workspace on the location (what the
           webserver does before the daemon starts a run), timed inside the process.

sqlite is the local default (deploy/local/dagster.yaml copied into DAGSTER_HOME, as `make dev`
does); postgres the shared instance (deploy/minikube/dagster.yaml on a throwaway server started
here from Debian's binaries and stopped at the end, ktx_dagster/testing/postgres.py).
`--sqlite-max-variables` sets SQLite's limit on bound variables per statement for every
connection (32766, SQLite's own default since 3.32, as on macOS; Debian builds raise it to
250000, which hides the wall the users of dagster-io/dagster#16260 hit); 0 keeps the library's.
A phase that fails is reported with its error's last line, and the run goes on.

Prints a table, ratios between sizes (time per partition), and last one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE_NAME = "scale_files"

LOCATION = '''
import dagster as dg
from ktx_dagster import DataDir, FilePartitions, definitions_for, transformation

FILES = FilePartitions("scale_files", "in", "part_*.txt")


@transformation(partitions=FILES, format="text", cpu="100m", memory="100Mi")
def scale_task(context: dg.AssetExecutionContext, data_dir: DataDir) -> str:
    """One empty input file per task."""
    return FILES.path_for(data_dir.path, context.partition_key).read_text()


defs = definitions_for(assets=[scale_task], deployment="local")
'''


# --- in the child process ---------------------------------------------------------------------

def _limit_sqlite_variables(limit: int) -> None:
    """Every SQLite connection of this process gets `limit` bound variables per statement."""
    if not limit:
        return
    import sqlite3

    import sqlalchemy as sa

    @sa.event.listens_for(sa.engine.Engine, "connect")
    def _set_limit(dbapi_connection, _record):
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)


def child(phase: str, location: str, out: str) -> None:
    os.environ["BENCH_LOCATION"] = location
    _limit_sqlite_variables(int(os.environ.get("BENCH_SQLITE_MAX_VARIABLES", "0")))
    if os.environ.get("BENCH_REGISTER_BATCH"):
        from ktx_dagster import partitions

        partitions.REGISTER_BATCH = int(os.environ["BENCH_REGISTER_BATCH"])
    result: dict = {}
    t0 = time.perf_counter()
    if phase in ("sync", "steady"):
        from ktx_dagster import cli

        # Time the registration itself apart from the process (imports, loading the location).
        def timed_sync(*args, _sync=cli.sync, **kwargs):
            t = time.perf_counter()
            try:
                return _sync(*args, **kwargs)
            finally:
                result["sync_s"] = round(time.perf_counter() - t, 3)

        cli.sync = timed_sync
        code = cli.main(["sync", "-f", location])
        if code:
            raise SystemExit(code)
    elif phase == "sensor":
        result.update(_sensor_tick(None))
    elif phase == "sensor2":
        # The tick every interval once every file is handled: a first tick on the instance the
        # sensor phase filled adopts all its keys (untimed), then the quiet tick with that cursor.
        adopted = _sensor_tick(None)
        result.update(_sensor_tick(adopted.pop("cursor")), adopt_s=adopted["evaluate_s"])
    elif phase == "backfill":
        result.update(_backfill(location))
    result.pop("cursor", None)
    result["inner_s"] = round(time.perf_counter() - t0, 3)
    Path(out).write_text(json.dumps(result))


def _sensor_tick(cursor: str | None) -> dict:
    import dagster as dg

    from ktx_dagster.cli import instance_from_env
    from ktx_dagster.code_location import resolve

    (loc,) = resolve(file=os.environ["BENCH_LOCATION"])
    repo_def = loc.load()
    (sensor,) = repo_def.sensor_defs
    instance = instance_from_env()
    t0 = time.perf_counter()
    with dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=repo_def,
                                 resources=repo_def.get_top_level_resources()) as context:
        result = sensor(context)
    evaluate = time.perf_counter() - t0
    # What crosses gRPC from the code server to the daemon, and what a tick record stores.
    t1 = time.perf_counter()
    size = len(dg.serialize_value(result.run_requests or [])) + len(dg.serialize_value(result.dynamic_partitions_requests or []))
    serialize = time.perf_counter() - t1
    # The sensor daemon's handling of the requests (dagster/_daemon/sensor.py,
    # _handle_dynamic_partitions_requests, 1.13): one existence query per key, then one add.
    t2 = time.perf_counter()
    for request in result.dynamic_partitions_requests or []:
        missing = [k for k in request.partition_keys if not instance.has_dynamic_partition(request.partitions_def_name, k)]
        if missing:
            instance.add_dynamic_partitions(request.partitions_def_name, missing)
    apply = time.perf_counter() - t2
    return {"cursor": result.cursor,
        "evaluate_s": round(evaluate, 3), "serialize_s": round(serialize, 3), "apply_s": round(apply, 3),
        "run_requests": len(result.run_requests or []), "requests": len(result.dynamic_partitions_requests or []),
        "result_bytes": size, "cursor_bytes": len(result.cursor or ""),
        "registered": len(instance.get_dynamic_partitions(SOURCE_NAME)),
    }


def _backfill(location: str) -> dict:
    # The webserver's own path: a workspace on the code location (served by a code server
    # process, as `dagster dev` does) answering the UI's mutation.
    import dagster as dg
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import PythonFileTarget
    from dagster_graphql.test.utils import execute_dagster_graphql

    from ktx_dagster.cli import instance_from_env

    instance = instance_from_env()
    target = PythonFileTarget(python_file=location, attribute="defs", working_directory=str(Path(location).parent),
                              location_name="scale")
    with WorkspaceProcessContext(instance, target) as workspace:
        ctx = workspace.create_request_context()
        t0 = time.perf_counter()
        result = execute_dagster_graphql(
            ctx,
            """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
                 __typename ... on LaunchBackfillSuccess { backfillId }
                 ... on PythonError { message } ... on InvalidSubsetError { message } } }""",
            variables={"p": {"assetSelection": [{"path": ["scale_task"]}], "allPartitions": True, "title": "scale"}},
        )
        plan = time.perf_counter() - t0
        data = (result.data or {}).get("launchPartitionBackfill") or {"__typename": "error", "message": str(result.errors)}
        if data["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"launchPartitionBackfill: {data.get('message', data)[:500]}")
        t1 = time.perf_counter()
        backfill = instance.get_backfill(data["backfillId"])
        reread = time.perf_counter() - t1
        targeted = backfill.asset_backfill_data.target_subset.num_partitions_and_non_partitioned_assets
        return {"plan_s": round(plan, 3), "reread_s": round(reread, 3), "targeted": targeted,
                "backfill_bytes": len(dg.serialize_value(backfill))}


# --- in the parent -------------------------------------------------------------------------------

def run_phase(phase: str, env: dict, location: Path, work: Path, timeout: float) -> dict:
    out = work / f"{phase}.json"
    cmd = [sys.executable, __file__, "--child", phase, "--location", str(location), "--out", str(out)]
    with open(work / f"{phase}.log", "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(location.parent))
        deadline = t0 + timeout
        while True:
            # wait4: this child's own CPU time and peak RSS
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        wall = time.perf_counter() - t0
    row = {"phase": phase, "wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
           "rss_mb": round(usage.ru_maxrss / 1024, 1)}
    if os.waitstatus_to_exitcode(status) == 0 and out.exists():
        row.update(json.loads(out.read_text()))
        row["ok"] = True
    else:
        text = (work / f"{phase}.log").read_text(errors="replace").strip().splitlines()
        last = next((line for line in reversed(text) if "Error" in line and "Background on this error" not in line),
                    next((line for line in reversed(text) if line.strip()), "killed"))
        row.update(ok=False, error=("timeout " if wall >= timeout else "") + last[:300])
    return row


def sqlite_size_mb(home: Path) -> float:
    return round(sum(p.stat().st_size for p in (home / "history").rglob("*") if p.is_file()) / 2**20, 2)


@contextlib.contextmanager
def backend_homes(backend: str, work: Path, pg):
    """Two DAGSTER_HOMEs (the CLI's and the sensor's instance) and a size function for each."""
    homes = {}
    for name in ("cli", "sensor"):
        home = work / f"home_{name}"
        home.mkdir()
        if backend == "sqlite":
            shutil.copy(REPO / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")
            homes[name] = (home, {}, lambda h=home: sqlite_size_mb(h))
        else:
            shutil.copy(REPO / "deploy" / "minikube" / "dagster.yaml", home / "dagster.yaml")
            db = pg.create_database(f"scale_{name}_{os.getpid()}_{int(time.time() * 1000) % 10**8}")
            env = {**db.dagster_env(), "KTX_COMPUTE_LOGS_DIR": str(work / "compute_logs")}
            size = lambda db=db: round(db.query("SELECT pg_database_size(current_database())")[0][0] / 2**20, 2)
            homes[name] = (home, env, size)
    yield homes


def measure(n: int, backend: str, phases: list[str], pg, max_vars: int, register_batch: int, timeout: float) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix=f"ktx-scale-{backend}-{n}-"))
    try:
        data = work / "data"
        (data / "in").mkdir(parents=True)
        t0 = time.perf_counter()
        width = len(str(n - 1))
        for i in range(n):
            (data / "in" / f"part_{i:0{width}d}.txt").touch()
        print(f"[{backend} n={n}] {n} files in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        location = work / "location.py"
        location.write_text(LOCATION)
        base_env = {**os.environ, "KTX_DATA_DIR": str(data), "KTX_DEPLOYMENT": "local", "KTX_MAX_CONCURRENT_RUNS": "2",
                    "BENCH_SQLITE_MAX_VARIABLES": str(max_vars if backend == "sqlite" else 0),
                    "BENCH_REGISTER_BATCH": str(register_batch or ""),
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        rows = []
        with backend_homes(backend, work, pg) as homes:
            order = [("sync", "cli"), ("sensor", "sensor"), ("sensor2", "sensor"), ("steady", "cli"), ("backfill", "cli")]
            for phase, which in order:
                if phase.rstrip("2") not in phases:
                    continue
                home, env, size = homes[which]
                env = {**base_env, **env, "DAGSTER_HOME": str(home)}
                row = run_phase(phase, env, location, work, timeout)
                try:
                    row["db_mb"] = size()
                except Exception as exc:  # noqa: BLE001 - a size we cannot read is not a result
                    row["db_mb"] = None
                    print(f"  size: {exc}", file=sys.stderr)
                row.update(n=n, backend=backend)
                rows.append(row)
                print(f"[{backend} n={n}] {phase}: {json.dumps(row)}", file=sys.stderr)
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=[1000, 10000, 100000])
    p.add_argument("--backend", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"])
    p.add_argument("--phases", nargs="+", choices=["sync", "sensor", "steady", "backfill"],
                   default=["sync", "sensor", "steady", "backfill"])
    p.add_argument("--sqlite-max-variables", type=int, default=32766)
    p.add_argument("--register-batch", type=int, default=0,
                   help="keys per add_dynamic_partitions (default: ktx_dagster's REGISTER_BATCH; "
                        "1000000000 registers all keys in one add, as before batching)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per phase")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--location", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.location, args.out)
        return 0

    rows: list[dict] = []
    with contextlib.ExitStack() as stack:
        pg = None
        if "postgres" in args.backend:
            sys.path.insert(0, str(REPO))
            from ktx_dagster.testing.postgres import throwaway_postgres

            pg = stack.enter_context(throwaway_postgres())
        for backend in args.backend:
            for n in args.n:
                rows += measure(n, backend, args.phases, pg, args.sqlite_max_variables, args.register_batch, args.timeout)

    for r in rows:  # the phase's own work, apart from starting Python and loading the location
        r["core_s"] = (r.get("sync_s") if r["phase"] in ("sync", "steady") else r.get("plan_s") if r["phase"] == "backfill"
                       else round(r.get("evaluate_s", 0) + r.get("apply_s", 0), 3) if "evaluate_s" in r else None)
    print(f"\n{'backend':<9}{'N':>8} {'phase':<9}{'core s':>8}{'wall s':>8}{'cpu s':>8}{'RSS MB':>8}{'DB MB':>8}  detail")
    for r in rows:
        detail = r.get("error") or ", ".join(
            f"{k}={r[k]}" for k in ("evaluate_s", "apply_s", "adopt_s", "run_requests", "cursor_bytes", "result_bytes",
                                    "targeted", "backfill_bytes") if r.get(k) is not None)
        core = r["core_s"] if r.get("core_s") is not None else "-"
        db = r["db_mb"] if r.get("db_mb") is not None else "-"
        print(f"{r['backend']:<9}{r['n']:>8} {r['phase']:<9}{core:>8}{r['wall_s']:>8}{r['cpu_s']:>8}{r['rss_mb']:>8}"
              f"{db:>8}  {'' if r['ok'] else 'FAILED '}{detail}")
    print("core s: the phase's own work (sync_s, the tick's evaluate + apply, the mutation's plan_s); wall/cpu/RSS:"
          " the whole process, ~6 s CPU of it importing Dagster and loading the location")
    ratios = {}
    print("\nratios (growth of core time from one N to the next, per x10 of N; 10.0 = linear):")
    for backend in args.backend:
        for phase in ("sync", "sensor", "sensor2", "steady", "backfill"):
            series = [r for r in rows if r["backend"] == backend and r["phase"] == phase and r["ok"] and r.get("core_s")]
            for a, b in itertools.pairwise(series):
                key = f"{backend}.{phase}.{a['n']}->{b['n']}"
                ratios[key] = round(b["core_s"] / a["core_s"], 2)
                print(f"  {key}: {ratios[key]}  (N x{b['n'] / a['n']:.0f})")
    for n in args.n:  # PostgreSQL's time over SQLite's, same N and phase
        for phase in ("sync", "sensor", "sensor2", "steady", "backfill"):
            pair = {r["backend"]: r for r in rows if r["n"] == n and r["phase"] == phase and r["ok"] and r.get("core_s")}
            if len(pair) == 2:
                ratios[f"postgres/sqlite.{phase}.{n}"] = round(pair["postgres"]["core_s"] / pair["sqlite"]["core_s"], 2)
    print(json.dumps({"bench": "partition_scale", "sqlite_max_variables": args.sqlite_max_variables,
                      "register_batch": args.register_batch or None,
                      "rows": rows, "ratios": ratios}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

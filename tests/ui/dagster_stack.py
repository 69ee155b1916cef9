"""A real local Dagster deployment on loopback: dagster-webserver + dagster-daemon processes
over a temporary DAGSTER_HOME (the repo's deploy/local/dagster.yaml) and a temporary data dir.

Used by the UI tests (tests/ui) and by bench/backfill.py. Everything goes through the
webserver's GraphQL API, as the UI does: launching backfills, reading their status, reading
partition and check status. `kill` and `restart` crash and start again one of the two
processes, as tests/ui/test_restart_during_backfill.py does mid-backfill.

The stock daemon evaluates backfills every 30 s (a constant in dagster._daemon.controller,
not an instance setting). `daemon_interval` < 30 starts the same `dagster-daemon run` CLI
through tests/ui/run_daemon.py, which only lowers that constant, so a backfill's runs start
and its completion is noticed within seconds; `daemon_interval=None` runs the stock
`.venv/bin/dagster-daemon`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HELLO_ASSET = "hello_world"
# What the UI tests' shared deployment starts with (tests/ui/conftest.py).
SAMPLE_KEYS = [f"part_{i}" for i in range(1, 4)]
MAX_CONCURRENT_RUNS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_inputs(data_dir: Path, keys: list[str], lines: int = 3) -> None:
    raw = data_dir / "hello_world" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for key in keys:
        (raw / f"{key}.txt").write_text("".join(f"line {j} of {key}\n" for j in range(1, lines + 1)))


class GraphQLError(RuntimeError):
    pass


@dataclass
class DagsterStack:
    root: Path
    max_concurrent_runs: int = 2
    daemon_interval: float | None = 3
    sensor_interval: int = 2
    extra_env: Mapping[str, str] = field(default_factory=dict)
    workspace: Path = REPO / "workspace.yaml"
    port: int = 0
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    # Processes killed or restarted by a test: their process groups may still hold code
    # servers and run workers, which stop() ends too.
    retired: list[subprocess.Popen] = field(default_factory=list)
    argvs: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home = self.root / "dagster_home"
        self.data = self.root / "data"
        self.logs = self.root / "logs"
        for d in (self.home, self.data, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "deploy" / "local" / "dagster.yaml", self.home / "dagster.yaml")
        self.port = self.port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    # --- processes -----------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        # A clean slate: no DAGSTER_/KTX_ settings of the caller leak in, except the choice of
        # local executor, so a run of the tests can mirror how `make dev` starts Dagster.
        keep = {"KTX_LOCAL_EXECUTOR"}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "KTX_")) or k in keep}
        env.update(
            DAGSTER_HOME=str(self.home),
            KTX_DATA_DIR=str(self.data),
            KTX_DEPLOYMENT="local",
            KTX_MAX_CONCURRENT_RUNS=str(self.max_concurrent_runs),
            KTX_SENSOR_INTERVAL_SECONDS=str(self.sensor_interval),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.argvs[name] = argv
        log = open(self.logs / f"{name}.log", "ab")  # a restarted process continues the log
        self.procs[name] = subprocess.Popen(
            argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,  # own process group: kill it whole
        )
        log.close()

    def sync_partitions(self) -> str:
        """`ktx sync -w workspace.yaml`, as `make dev` does before starting Dagster."""
        out = subprocess.run(
            [sys.executable, "-m", "ktx_dagster", "sync", "-w", "workspace.yaml"], cwd=REPO, env=self.env,
            capture_output=True, text=True, timeout=120,
        )
        if out.returncode:
            raise RuntimeError(f"ktx_dagster sync failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout

    def create_storage(self) -> None:
        """The instance's storage (tables, schema version), created once before the webserver,
        the daemon and their code servers start: each would otherwise create a new SQLite
        schema at the same moment (alembic: "more than one head"). `make dev` has `ktx sync`
        do it first."""
        subprocess.run(
            [sys.executable, "-c", "import dagster; dagster.DagsterInstance.get().dispose()"],
            cwd=REPO, env=self.env, check=True, capture_output=True, timeout=120,
        )

    def start(self, timeout: float = 120) -> None:
        self.create_storage()
        workspace = str(self.workspace)
        self._spawn("webserver", [str(BIN / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1", "-p", str(self.port)])
        if self.daemon_interval is None:
            daemon = [str(BIN / "dagster-daemon"), "run", "-w", workspace]
        else:
            daemon = [sys.executable, str(Path(__file__).with_name("run_daemon.py")), str(self.daemon_interval),
                      "run", "-w", workspace]
        self._spawn("daemon", daemon)
        self.wait_ready(timeout)

    def kill(self, name: str, sig: int = signal.SIGKILL, group: bool = False) -> int:
        """Send `sig` to the process `name` alone (not its group: the run workers and code
        servers it started live on, as after a crash of just that process), or with `group`
        to its whole process group (what a container's restart does); returns its pid."""
        proc = self.procs.pop(name)
        self.retired.append(proc)
        if group:
            os.killpg(proc.pid, sig)  # started with start_new_session: its pgid is its pid
        else:
            proc.send_signal(sig)
        proc.wait(timeout=30)
        return proc.pid

    def restart(self, name: str, timeout: float = 120, sig: int | None = None) -> None:
        """Start `name` again with the same command line (after `kill`, or killing it with
        `sig` first), then wait until the deployment is ready with this new process."""
        if name in self.procs:
            self.kill(name, sig or signal.SIGTERM)
        restarted_at = time.time()
        with open(self.logs / f"{name}.log", "ab") as log:
            log.write(f"\n===== restarted at {restarted_at:.3f} =====\n".encode())
        self._spawn(name, self.argvs[name])
        deadline = time.monotonic() + timeout
        self.wait_ready(timeout)
        if name == "daemon":  # the old daemon's heartbeats count as healthy for a while
            self.wait_for(lambda: self._daemons_healthy(since=restarted_at), deadline, "the new daemon's heartbeats")

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.wait_for(lambda: self._http_ok("/server_info"), deadline, "webserver /server_info")
        self.wait_for(self._location_loaded, deadline, "code location loaded")
        self.wait_for(self._daemons_healthy, deadline, "daemons healthy")

    def wait_for(self, predicate: Callable[[], Any], deadline: float, what: str, interval: float = 0.5) -> Any:
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                value = predicate()
                if value:
                    return value
            except (OSError, GraphQLError, urllib.error.URLError) as exc:
                last_error = exc
            time.sleep(interval)
        raise TimeoutError(f"timed out waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))

    @contextlib.contextmanager
    def running(self, timeout: float = 180) -> Iterator[DagsterStack]:
        """Started for the block, stopped after it; a stack that fails to start prints its logs."""
        try:
            self.start(timeout=timeout)
        except BaseException:
            self.stop()
            print(self.dump_logs(), file=sys.stderr)
            raise
        try:
            yield self
        finally:
            self.stop()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for proc in [*self.procs.values(), *self.retired]:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The group also holds code servers and run workers: make sure none survive.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)

    def log_tail(self, name: str, lines: int = 80) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def dump_logs(self, lines: int = 120) -> str:
        return "\n".join(f"===== {name} ({self.logs / name}.log) =====\n{self.log_tail(name, lines)}" for name in self.procs)

    # --- HTTP / GraphQL ------------------------------------------------------------------
    def _http_ok(self, path: str) -> bool:
        with urllib.request.urlopen(self.url + path, timeout=5) as resp:
            return resp.status == 200

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        req = urllib.request.Request(self.url + "/graphql", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            payload = json.loads(resp.read())
        if payload.get("errors"):
            raise GraphQLError(json.dumps(payload["errors"])[:2000])
        return payload["data"]

    def _location_loaded(self) -> bool:
        data = self.graphql(
            """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
                 locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
        )
        entries = data["workspaceOrError"]["locationEntries"]
        for entry in entries:
            error = entry["locationOrLoadError"]
            if error and error["__typename"] == "PythonError":
                raise RuntimeError(f"code location {entry['name']} failed to load: {error['message']}")
        return bool(entries) and all(e["loadStatus"] == "LOADED" and e["locationOrLoadError"] for e in entries)

    def _daemons_healthy(self, since: float = 0) -> bool:
        """The daemons the tests need are healthy (and have sent a heartbeat after `since`)."""
        data = self.graphql(
            "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required lastHeartbeatTime } } } }"
        )
        statuses = {
            d["daemonType"]: d["healthy"] and (d["lastHeartbeatTime"] or 0) > since
            for d in data["instance"]["daemonHealth"]["allDaemonStatuses"]
        }
        return all(statuses.get(t) for t in ("SENSOR", "BACKFILL", "QUEUED_RUN_COORDINATOR"))

    # --- backfills -----------------------------------------------------------------------
    def launch_backfill(self, asset: str = HELLO_ASSET, partitions: list[str] | None = None, title: str | None = None) -> str:
        """An asset backfill of `partitions` (all when None) of `asset`; returns its id."""
        params: dict[str, Any] = {"assetSelection": [{"path": [asset]}], "title": title or f"{asset} backfill"}
        if partitions is None:
            params["allPartitions"] = True
        else:
            params["partitionNames"] = partitions
        data = self.graphql(
            """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
                 __typename ... on LaunchBackfillSuccess { backfillId }
                 ... on PythonError { message stack } ... on InvalidStepError { invalidStepKey }
                 ... on UnauthorizedError { message } ... on InvalidSubsetError { message } } }""",
            {"p": params},
        )
        result = data["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise GraphQLError(f"launchPartitionBackfill: {result}")
        return result["backfillId"]

    def retry_failed(self, backfill_id: str) -> str:
        """The UI's "Re-execute → from failure" on a backfill: a new backfill of its failed partitions."""
        data = self.graphql(
            """mutation($id: String!) { reexecutePartitionBackfill(
                 reexecutionParams: {parentRunId: $id, strategy: FROM_FAILURE}) {
                 __typename ... on LaunchBackfillSuccess { backfillId }
                 ... on PythonError { message stack } ... on UnauthorizedError { message } } }""",
            {"id": backfill_id},
        )
        result = data["reexecutePartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise GraphQLError(f"reexecutePartitionBackfill: {result}")
        return result["backfillId"]

    def backfill(self, backfill_id: str) -> dict[str, Any]:
        data = self.graphql(
            """query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename
                 ... on PartitionBackfill { id status numPartitions fromFailure title
                   partitionNames endTimestamp timestamp
                   assetBackfillData { assetBackfillStatuses { __typename
                     ... on AssetPartitionsStatusCounts { assetKey { path } numPartitionsTargeted
                       numPartitionsInProgress numPartitionsMaterialized numPartitionsFailed } } }
                   runs(limit: 10000) { id status creationTime startTime endTime tags { key value } } }
                 ... on PythonError { message } ... on BackfillNotFoundError { message } } }""",
            {"id": backfill_id},
        )
        result = data["partitionBackfillOrError"]
        if result["__typename"] != "PartitionBackfill":
            raise GraphQLError(f"partitionBackfillOrError: {result}")
        return result

    def backfill_status(self, backfill_id: str) -> str:
        """Just the status: cheap enough to poll every second."""
        data = self.graphql(
            """query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename
                 ... on PartitionBackfill { status } ... on PythonError { message } } }""",
            {"id": backfill_id},
        )
        result = data["partitionBackfillOrError"]
        if result["__typename"] != "PartitionBackfill":
            raise GraphQLError(f"partitionBackfillOrError: {result}")
        return result["status"]

    def backfill_run_counts(self, backfill_id: str) -> dict[str, int]:
        """Runs the backfill has created and how many of them have finished: two counts, cheap
        at any size (the full state lists every run)."""
        data = self.graphql(
            """query($all: RunsFilter, $done: RunsFilter) {
                 created: runsOrError(filter: $all) { ... on Runs { count } }
                 finished: runsOrError(filter: $done) { ... on Runs { count } } }""",
            {"all": {"tags": [{"key": "dagster/backfill", "value": backfill_id}]},
             "done": {"tags": [{"key": "dagster/backfill", "value": backfill_id}],
                      "statuses": ["SUCCESS", "FAILURE", "CANCELED"]}},
        )
        return {"created": data["created"]["count"], "finished": data["finished"]["count"]}

    BACKFILL_DONE = frozenset({"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"})

    def wait_backfill(self, backfill_id: str, timeout: float = 420) -> dict[str, Any]:
        """Wait until the daemon marks the backfill finished; returns its final state."""
        self.wait_for(
            lambda: self.backfill_status(backfill_id) in self.BACKFILL_DONE,
            time.monotonic() + timeout, f"backfill {backfill_id} to finish", interval=1,
        )
        return self.backfill(backfill_id)

    def step_failures(self, run_id: str) -> list[str]:
        """Error messages of the run's failed (or retried) steps, causes included."""
        data = self.graphql(
            """query($id: ID!) { runOrError(runId: $id) { __typename ... on Run {
                 eventConnection(afterCursor: null) { events { __typename
                   ... on ExecutionStepFailureEvent { error { message cause { message } } }
                   ... on ExecutionStepUpForRetryEvent { error { message cause { message } } } } } } } }""",
            {"id": run_id},
        )
        messages = []
        for event in data["runOrError"]["eventConnection"]["events"]:
            error = event.get("error")
            if error:
                messages.append(error["message"])
                if error.get("cause"):
                    messages.append(error["cause"]["message"])
        return messages

    @staticmethod
    def max_overlap(runs: list[dict[str, Any]]) -> int:
        """Most runs that were executing at the same moment (from their start/end times)."""
        edges = []
        for run in runs:
            if run.get("startTime") and run.get("endTime"):
                edges += [(run["startTime"], 1), (run["endTime"], -1)]
        current = peak = 0
        for _, delta in sorted(edges, key=lambda e: (e[0], e[1])):
            current += delta
            peak = max(peak, current)
        return peak

    @staticmethod
    def partition_of(run: dict[str, Any]) -> str | None:
        return next((t["value"] for t in run["tags"] if t["key"] == "dagster/partition"), None)

    # --- assets --------------------------------------------------------------------------
    def partitions(self, asset: str = HELLO_ASSET) -> dict[str, Any]:
        """Partition keys, per-partition status and the latest check results of `asset`."""
        data = self.graphql(
            """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { __typename
                 ... on AssetNode { partitionKeys
                   partitionStats { numMaterialized numPartitions numFailed numMaterializing }
                   assetPartitionStatuses { __typename
                     ... on DefaultPartitionStatuses { materializedPartitions failedPartitions
                       unmaterializedPartitions materializingPartitions } }
                   assetChecksOrError { __typename ... on AssetChecks { checks { name } } } } } }""",
            {"key": {"path": [asset]}},
        )
        return data["assetNodeOrError"]

    def check_results(self, asset: str, partition: str) -> dict[str, bool | None]:
        """Check name -> passed, for the latest evaluation on `partition`."""
        node = self.partitions(asset)
        results: dict[str, bool | None] = {}
        for check in node["assetChecksOrError"]["checks"]:
            data = self.graphql(
                """query($key: AssetKeyInput!, $name: String!) { assetCheckExecutions(
                     assetKey: $key, checkName: $name, limit: 50) { status partition
                     evaluation { success partition } } }""",
                {"key": {"path": [asset]}, "name": check["name"]},
            )
            for ex in data["assetCheckExecutions"]:
                ev = ex["evaluation"]
                if ev and ev.get("partition") == partition:
                    results[check["name"]] = ev["success"]
                    break
            else:
                results[check["name"]] = None
        return results

    def materializations(self, asset: str = HELLO_ASSET, limit: int = 10000) -> list[dict[str, Any]]:
        """Materialization events of `asset`: partition, run id and numeric metadata."""
        data = self.graphql(
            """query($key: AssetKeyInput!, $n: Int) { assetOrError(assetKey: $key) { __typename
                 ... on Asset { assetMaterializations(limit: $n) { partition runId timestamp
                   metadataEntries { label __typename ... on FloatMetadataEntry { floatValue }
                     ... on IntMetadataEntry { intValue } } } } } }""",
            {"key": {"path": [asset]}, "n": limit},
        )
        events = []
        for event in data["assetOrError"]["assetMaterializations"]:
            numbers = {
                m["label"]: m.get("floatValue", m.get("intValue"))
                for m in event["metadataEntries"]
                if m["__typename"] in ("FloatMetadataEntry", "IntMetadataEntry")
            }
            events.append({"partition": event["partition"], "runId": event["runId"], "metadata": numbers})
        return events

    def sensor_ticks(self, sensor: str, limit: int = 5, location: str = "hello_world") -> list[dict[str, Any]]:
        """Latest ticks of `sensor`, newest first: status, timestamp, skip reason, run ids."""
        data = self.graphql(
            """query($s: SensorSelector!, $n: Int) { sensorOrError(sensorSelector: $s) { __typename
                 ... on Sensor { sensorState { status ticks(limit: $n) { id status timestamp
                   skipReason runIds error { message } } } }
                 ... on PythonError { message } ... on SensorNotFoundError { message } } }""",
            {"s": {"repositoryLocationName": location, "repositoryName": "__repository__",
                   "sensorName": sensor}, "n": limit},
        )
        result = data["sensorOrError"]
        if result["__typename"] != "Sensor":
            raise GraphQLError(f"sensorOrError: {result}")
        return result["sensorState"]["ticks"]

    def runs(self, tag_key: str, tag_value: str) -> list[dict[str, Any]]:
        data = self.graphql(
            """query($f: RunsFilter) { runsOrError(filter: $f) { __typename ... on Runs {
                 results { id status startTime endTime tags { key value } } } } }""",
            {"f": {"tags": [{"key": tag_key, "value": tag_value}]}},
        )
        return data["runsOrError"]["results"]

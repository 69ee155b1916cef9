"""Process faults under `ktx materialize`: a run process SIGKILLed half-way through writing its
partition's output, and what the CLI does about it. Real processes, real files, a real
instance under DAGSTER_HOME; the kill lands at a known point of the write (the code location
tests/fixtures/fault_defs.py stops its write half-way and says so), not after a guessed sleep.

One module fixture drives the CLI three times, as a user would:
  1. `--select writer --partition p3`            only p3 runs
  2. `--select writer line_count`, p2 stalled    p2's run process is SIGKILLed mid-write
  3. the same with `--missing`, after the crash  only p2 of writer runs again, then line_count
and the tests read what each call left behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest

from ktx_dagster.cli import main
from ktx_dagster.warm import PID_TAG

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "fixtures"))
from fault_defs import PARTITIONS, STALL_DIR, writer_text  # noqa: E402

LOCATION = ["-f", str(REPO / "tests" / "fixtures" / "fault_defs.py")]
pytestmark = pytest.mark.timeout(300)


@dataclass
class Call:
    returncode: int
    stdout: str
    run_ids: list[str] = field(default_factory=list)  # the runs this call created


@dataclass
class Crash:
    """What `ktx materialize` went through: the three calls and the moment of the kill."""
    data: Path
    home: Path
    only_p3: Call
    killed: Call
    missing: Call
    report: dict  # the stalled writer's own account: pid, file, bytes on disk
    at_kill: dict  # the output folder as the kill found it: name -> size
    downstream_after_kill: list[str]  # line_count's outputs when the killed call ended


def _instance(home: Path) -> dg.DagsterInstance:
    from dagster._core.instance.ref import InstanceRef

    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def _run_ids(home: Path) -> set[str]:
    if not (home / "history").exists():
        return set()
    with _instance(home) as instance:
        return {r.run_id for r in instance.get_runs()}


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, _ = proc.communicate()
            raise AssertionError(f"the CLI ended ({proc.returncode}) before the write stalled:\n{out[-4000:]}")
        assert time.monotonic() < deadline, f"no stalled write after {timeout}s"
        time.sleep(0.05)
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def crash(tmp_path_factory) -> Crash:
    tmp = tmp_path_factory.mktemp("faults")
    data, home = tmp / "data", tmp / "home"
    data.mkdir()
    env = {**os.environ, "KTX_DATA_DIR": str(data), "DAGSTER_HOME": str(home), "KTX_MAX_CONCURRENT": "2",
           "KTX_DEPLOYMENT": "local"}
    cli = [sys.executable, "-m", "ktx_dagster", "materialize", *LOCATION]

    def call(*args: str) -> Call:
        before = _run_ids(home)
        proc = subprocess.run([*cli, *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=240)
        return Call(proc.returncode, proc.stdout + proc.stderr, sorted(_run_ids(home) - before))

    only_p3 = call("--select", "writer", "--partition", "p3")

    stall = data / STALL_DIR / "writer" / "p2"
    stall.parent.mkdir(parents=True)
    stall.touch()
    before = _run_ids(home)
    proc = subprocess.Popen([*cli, "--select", "writer", "line_count"], cwd=tmp, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        report = _wait_for(stall.with_name("p2.writing"), proc)
        at_kill = {p.name: p.stat().st_size for p in (data / "writer").iterdir()}
        os.kill(report["pid"], signal.SIGKILL)
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed = Call(proc.returncode, out, sorted(_run_ids(home) - before))
    downstream = sorted(p.name for p in (data / "line_count").glob("*")) if (data / "line_count").exists() else []

    stall.unlink()  # "the fix": the next write of p2 goes through
    missing = call("--select", "writer", "line_count", "--missing")
    return Crash(data, home, only_p3, killed, missing, report, at_kill, downstream)


def _runs_by_asset(crash: Crash, run_ids: list[str]) -> dict[str, list[str]]:
    """asset -> partitions run, for the given runs."""
    out: dict[str, list[str]] = {}
    with _instance(crash.home) as instance:
        for run_id in run_ids:
            run = instance.get_run_by_id(run_id)
            (key,) = run.asset_selection
            out.setdefault(key.to_user_string(), []).append(run.tags.get("dagster/partition"))
    return {asset: sorted(keys) for asset, keys in out.items()}


@pytest.mark.reliability(
    "fault", case="a run process SIGKILLed in the middle of writing its output",
    injected="`ktx materialize`: the run process of one partition stops half-way through writing its output "
             "(half the bytes on disk), then is sent SIGKILL",
    seen="the partition FAILED: 'run process <pid> was killed by SIGKILL (the OOM killer or kill -9) before the "
         "run ended'; the run is FAILURE in the instance, not left STARTED",
    outcome="no file at the output path (only the hidden temporary file holds the half write); "
            "`ktx materialize --missing` writes it whole")
def test_a_run_killed_mid_write_leaves_no_partial_output_and_is_failed(crash):
    # the kill came mid-write: half the bytes were in the IO manager's hidden temporary file
    written = Path(crash.report["path"])
    assert written.name.startswith(".p2.txt.") and written.name.endswith(".tmp"), written
    assert crash.at_kill[written.name] == crash.report["bytes_written"] == len(writer_text("p2")) // 2
    assert "p2.txt" not in crash.at_kill
    # after it: nothing at the output path, and the run says why it failed
    (run_id,) = [r for r in crash.killed.run_ids if _runs_by_asset(crash, [r]) == {"writer": ["p2"]}]
    with _instance(crash.home) as instance:
        run = instance.get_run_by_id(run_id)
        assert run.status == dg.DagsterRunStatus.FAILURE
        assert run.tags[PID_TAG] == str(crash.report["pid"])  # recorded by the run process: terminable from the UI
        failure = [e.dagster_event.message for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)]
    told = f"run process {crash.report['pid']} was killed by SIGKILL (the OOM killer or kill -9)"
    assert any(told in m for m in failure), failure
    assert f"writer[p2] FAILED (run {run_id[:8]}): {told}" in crash.killed.stdout, crash.killed.stdout
    # the re-run wrote it whole
    assert (crash.data / "writer" / "p2.txt").read_text() == writer_text("p2")


@pytest.mark.reliability(
    "fault", case="a crashed or OOM-killed run process",
    injected="`ktx materialize` over three partitions; one partition's run process SIGKILLed",
    seen="that partition FAILED with the signal named; the others ok ('writer 2 ok, 1 failed')",
    outcome="only the killed partition fails; the other partitions' outputs are whole")
def test_a_killed_run_process_fails_only_its_partition(crash):
    assert _runs_by_asset(crash, crash.killed.run_ids) == {"writer": PARTITIONS}
    assert "writer                       2 ok, 1 failed" in crash.killed.stdout, crash.killed.stdout
    for key in ("p1", "p3"):
        assert (crash.data / "writer" / f"{key}.txt").read_text() == writer_text(key)


@pytest.mark.reliability(
    "fault", case="the assets downstream of a failed partition",
    injected="`ktx materialize --select writer line_count` where a partition of writer is killed",
    seen="'line_count: skipped, an upstream transformation failed'; the summary says skipped, not ok",
    outcome="no run of line_count starts on incomplete input; --missing runs it after the fix")
def test_downstream_of_a_failure_is_skipped_and_reported_skipped(crash):
    out = crash.killed.stdout
    assert "line_count: skipped, an upstream transformation failed" in out, out
    assert "line_count                   skipped" in out, out
    assert "line_count[" not in out  # not one partition of it ran
    assert "line_count" not in _runs_by_asset(crash, crash.killed.run_ids)
    assert crash.downstream_after_kill == []


def test_partition_option_runs_only_that_partition(crash):
    assert crash.only_p3.returncode == 0, crash.only_p3.stdout
    assert _runs_by_asset(crash, crash.only_p3.run_ids) == {"writer": ["p3"]}
    assert "writer                       1 ok, 0 failed" in crash.only_p3.stdout, crash.only_p3.stdout


def test_missing_after_a_crash_runs_only_the_crashed_partition(crash):
    assert crash.missing.returncode == 0, crash.missing.stdout
    assert _runs_by_asset(crash, crash.missing.run_ids) == {"writer": ["p2"], "line_count": PARTITIONS}
    assert "writer: 2 partition(s) already materialized, reused" in crash.missing.stdout, crash.missing.stdout
    assert (crash.data / "line_count" / "p2.txt").read_text() == str(len(writer_text("p2").splitlines()))


def test_exit_code_is_zero_only_when_every_partition_succeeded(crash, capsys):
    assert (crash.only_p3.returncode, crash.killed.returncode, crash.missing.returncode) == (0, 1, 0)
    assert "After a fix, re-run what failed or never ran: ktx materialize --missing" in crash.killed.stdout
    # ...and `ktx --help` says what the codes mean
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    assert "exit status:\n  0  every selected partition succeeded" in help_text, help_text
    assert "\n  1  a partition failed, or was skipped because its upstream failed" in help_text
    assert "\n  2  bad arguments" in help_text


def test_a_dead_run_process_is_described_in_the_users_terms():
    """What the CLI and the run's failure say when a run process ends without ending its run."""
    from ktx_dagster.launch import describe_death

    assert describe_death(41, -9) == (
        "run process 41 was killed by SIGKILL (the OOM killer or kill -9) before the run ended (exit -9)")
    assert describe_death(41, -11) == "run process 41 was killed by SIGSEGV before the run ended (exit -11)"
    assert describe_death(41, 3) == "run process 41 exited with 3 before the run ended (a crash in the process)"

"""A run launcher whose run workers start warm: Dagster's DefaultRunLauncher, minus the
interpreter start-up per run.

Dagster's DefaultRunLauncher asks the code server to start each run, and the code server
spawns a new interpreter that imports dagster, pandas, pyarrow and the code location: about
1.5-2 s of CPU per run, i.e. per partition of a backfill, before the task does anything. This
launcher starts each run in a fresh process forked from a warm server (ktx_dagster/warm.py)
and executes it exactly as `dagster api execute_run` does. Each run still has a process of
its own: its own memory, a crash or OOM kill ends only that run.

    run_launcher:
      module: ktx_dagster.run_launcher
      class: WarmRunLauncher

Falls back to the DefaultRunLauncher (code server) for a run whose code location runs under
another Python than the launcher's (a different virtualenv): forking would run the wrong one.
Termination sends SIGINT to the run process, as Dagster's code server does, so the run ends
CANCELED with its steps interrupted; a run whose process is already gone (killed, crashed) or
was never recorded is marked CANCELED at once, with a message that says so, instead of
waiting forever in CANCELING. Run monitoring (the daemon) asks whether the process is alive
and fails the run of one that died.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Mapping
from typing import Any

from dagster import DagsterRun, DefaultRunLauncher, Field

from ktx_dagster import warm
from ktx_dagster.compat import CheckRunHealthResult, ConfigurableClassData, LaunchRunContext, WorkerStatus

PID_TAG = warm.PID_TAG
# Set by Dagster's DefaultRunLauncher on the runs it hands to a code server (the fallback).
CODE_SERVER_TAG = ".dagster/grpc_info"


def _same_python(executable: str | None) -> bool:
    if not executable:
        return True
    try:
        return os.path.samefile(executable, sys.executable)
    except OSError:
        return executable == sys.executable


class WarmRunLauncher(DefaultRunLauncher):
    def __init__(self, inst_data: ConfigurableClassData | None = None, preload_modules: list[str] | None = None):
        super().__init__(inst_data=inst_data)
        self.preload = tuple(preload_modules) if preload_modules else warm.PRELOAD
        self._procs: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def config_type(cls):
        return {
            "preload_modules": Field(
                [str], is_required=False,
                description="Libraries the fork server imports once (default: dagster, numpy, pandas, pyarrow, ...).",
            )
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]):
        return cls(inst_data=inst_data, preload_modules=config_value.get("preload_modules"))

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = run.job_code_origin
        if origin is None or not _same_python(origin.executable_path):
            super().launch_run(context)
            return
        proc = warm.start_run(run.run_id, self._instance, preload=self.preload)
        self._instance.add_run_tags(run.run_id, {PID_TAG: str(proc.pid)})
        with self._lock:
            # forget finished processes (the fork server reaps them; this drops the handles)
            for run_id in [r for r, p in self._procs.items() if p.exitcode is not None]:
                del self._procs[run_id]
            self._procs[run.run_id] = proc

    def _pid(self, run: DagsterRun) -> int | None:
        raw = run.tags.get(PID_TAG)
        return int(raw) if raw and raw.isdigit() else None

    def _alive(self, run: DagsterRun, pid: int) -> tuple[bool, int | None]:
        """Whether the run's process is alive, and its exit code when this launcher knows it."""
        with self._lock:
            proc = self._procs.get(run.run_id)
        if proc is not None:
            return proc.exitcode is None, proc.exitcode
        try:  # launched by another process of this deployment (e.g. before a daemon restart)
            os.kill(pid, 0)
        except ProcessLookupError:
            return False, None
        except PermissionError:
            pass
        return True, None

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if not run or run.is_finished:
            return False
        pid = self._pid(run)
        if pid is None:
            if CODE_SERVER_TAG in run.tags:
                return super().terminate(run_id)
            self._instance.report_run_canceled(
                run, f"Run {run_id} was terminated, but no run process was ever recorded for it (it never "
                     "started, or its process died before it could); marked canceled, nothing was left to stop.")
            return True
        alive, _ = self._alive(run, pid)
        if not alive:
            self._instance.report_run_canceled(
                run, f"Run {run_id} was terminated, but its run process {pid} was already gone (killed or "
                     "crashed); marked canceled. Re-run its partition to materialize it.")
            return True
        self._instance.report_run_canceling(run)
        try:
            os.kill(pid, signal.SIGINT)  # Dagster's run worker turns this into a clean cancel
        except ProcessLookupError:  # it died between the check and the signal
            self._instance.report_run_canceled(
                run, f"Run {run_id} was terminated; its run process {pid} ended meanwhile; marked canceled.")
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        pid = self._pid(run)
        if pid is None:
            if CODE_SERVER_TAG in run.tags:  # the fallback: Dagster's launcher checks no health
                return CheckRunHealthResult(WorkerStatus.RUNNING, "run launched through its code server: not checked")
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "no run process was ever recorded for this run")
        alive, exitcode = self._alive(run, pid)
        if alive:
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        if exitcode is None:
            return CheckRunHealthResult(WorkerStatus.FAILED, f"run process {pid} is gone", run_worker_id=str(pid))
        status = WorkerStatus.SUCCESS if exitcode == 0 else WorkerStatus.FAILED
        return CheckRunHealthResult(status, f"run process {pid} exited with {exitcode}", run_worker_id=str(pid))

    def join(self, timeout: int = 30) -> None:
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            proc.join(timeout)

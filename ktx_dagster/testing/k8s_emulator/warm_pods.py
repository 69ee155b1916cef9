"""The control-plane runtime: pods start at once, so what is left to measure is Kubernetes'
and Dagster's own work.

On a real node a step pod pays an image pull, a container start and a fresh interpreter that
imports Dagster and the project (~5 CPU-seconds here) before the step runs. To see what a
backfill of many partitions costs the control plane (the daemon, the run workers, the
executor's Jobs and Pods, the API server, the instance's writes) on a 2-core machine, the
emulator's ``runtime="control-plane"`` runs a pod whose command is a Dagster CLI command
(``dagster api execute_step`` / ``execute_run``, wherever it appears in the command, so the
step wrapper ``ktx_dagster.executors.step_worker`` is skipped) in a process forked from the
warm fork server the run launcher uses (``ktx_dagster.warm``: Dagster, dagster-k8s and the
data libraries imported once). The command itself is real: it loads the code location, runs
the step and writes every event; its CPU time is counted per pod (``PodProcess.cpu_seconds``).
Other commands run as local processes, as in the default runtime.

What it does not do: the step wrapper's disruption handling (SIGTERM goes straight to the
Dagster command), per-pod interpreter state (modules the fork server imported are shared, as
they would not be in separate containers), resource limits. A pod killed by a signal has no
CPU figure (its report is written as it ends).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence

from ktx_dagster import warm

# What every pod would import: the run processes' list, and ktx_dagster's definitions on top.
PRELOAD = (*warm.PRELOAD, "dagster_k8s", "ktx_dagster.definitions")


def dagster_command(argv: Sequence[str]) -> list[str] | None:
    """The Dagster CLI command inside a pod's command (``... dagster api execute_step``), or None."""
    for i, arg in enumerate(argv):
        if os.path.basename(arg) == "dagster" and i + 1 < len(argv):
            return list(argv[i:])
    return None


def _run_pod_command(argv: list[str], report: str) -> None:
    """In the forked pod process (env, cwd and log already applied by ``warm``): a session of
    its own, as a process pod has, then the Dagster CLI; then the report of its end."""
    os.setsid()
    with open(report + ".started", "w"):  # the kubelet signals our group from now on
        pass
    # PYTHONPATH is read at interpreter start, which this process did not have
    for entry in reversed([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    code = 1
    try:
        from ktx_dagster.compat import dagster_cli_main

        sys.argv = ["dagster", *argv[1:]]
        try:
            dagster_cli_main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:  # the pod fails as a process would, with its traceback
        import traceback

        traceback.print_exception(exc)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
        with open(report + ".tmp", "w") as f:
            json.dump({"cpu": cpu, "maxrss": max(own.ru_maxrss, children.ru_maxrss)}, f)
        os.replace(report + ".tmp", report)
        os._exit(code & 0xFF)


class PodProcess:
    """A pod's forked process as the kubelet sees it: a ``subprocess.Popen`` look-alike
    (pid, poll, wait, its output's lines) plus its CPU time and peak RSS once it has ended."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], cwd: str, pod_dir: str):
        os.makedirs(pod_dir, exist_ok=True)
        self._log = os.path.join(pod_dir, "main.log")
        self._report = os.path.join(pod_dir, "main.end")
        for path in (self._log, self._report, self._report + ".started"):
            if os.path.exists(path):
                os.unlink(path)
        open(self._log, "wb").close()
        self._proc = warm.start(_run_pod_command, (list(argv), self._report), name="pod", log_path=self._log,
                                env=dict(env), cwd=cwd, preload=PRELOAD)
        self.pid = self._proc.pid
        self.returncode: int | None = None
        self.cpu_seconds = 0.0
        self.max_rss_kib = 0
        # until its session exists the kubelet could not signal it as a group
        while not os.path.exists(self._report + ".started") and self._proc.is_alive():
            time.sleep(0.005)

    def poll(self) -> int | None:
        if self.returncode is None and self._proc.exitcode is not None:
            code = self._proc.exitcode
            self.returncode = 128 - code if code < 0 else code  # killed: shell-style, as process pods
            try:
                with open(self._report) as f:
                    report = json.load(f)
                self.cpu_seconds, self.max_rss_kib = report["cpu"], report["maxrss"]
            except (OSError, ValueError):
                pass
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._proc.join(timeout)
        if self.poll() is None:
            raise subprocess.TimeoutExpired("pod", timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def lines(self) -> Iterator[bytes]:
        """The pod's output, line by line as it is written, until the process has ended."""
        with open(self._log, "rb") as f:
            pending = b""
            while True:
                ended = self.poll() is not None
                chunk = f.read()
                if chunk:
                    pending += chunk
                    *complete, pending = pending.split(b"\n")
                    for line in complete:
                        yield line + b"\n"
                elif ended:
                    break
                else:
                    time.sleep(0.05)
            if pending:
                yield pending

"""The control-plane runtime: pods start at once, so what is left to measure is Kubernetes'
and Dagster's own work.

On a real node a step pod pays an image pull, a container start and a fresh interpreter that
imports Dagster and the project (~5 CPU-seconds here) before the step runs. To see what a
backfill of 10,000 partitions costs the control plane (the daemon, the run workers, the
executor's Jobs and Pods, the API server, the instance's writes) on a 2-core machine, the
emulator's ``runtime="control-plane"`` runs a pod whose command is a Dagster CLI command
(``dagster api execute_step`` / ``execute_run``, wherever it appears in the command, so the
step wrapper ``ktx_dagster.executors.step_worker`` is skipped) in a process forked from one
warm interpreter that has imported Dagster, dagster-k8s and ktx_dagster once. The command
itself is real: it loads the code location, runs the step and writes every event; its CPU
time is counted per pod (``PodProcess.cpu_seconds``). Other commands run as local processes,
as in the default runtime.

What it does not do: the step wrapper's disruption handling (SIGTERM goes straight to the
Dagster command), per-pod interpreter state (modules the warm interpreter imported are shared,
as they would not be in separate containers), resource limits.

The warm interpreter is this module's ``main``: one Unix socket, one request per pod. For each
it forks a supervisor, which forks the pod's process in a session of its own, sends back
``pid N``, relays nothing (the pod writes straight to the socket), waits for it and ends the
stream with one line ``\\0ktx-exit {json}`` carrying the exit code and the pod's rusage.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence

_EXIT = b"\0ktx-exit "
PRELOAD = ("dagster", "dagster._cli", "dagster_k8s", "ktx_dagster", "ktx_dagster.definitions")


def dagster_command(argv: Sequence[str]) -> list[str] | None:
    """The Dagster CLI command inside a pod's command (``... dagster api execute_step``), or None."""
    for i, arg in enumerate(argv):
        if os.path.basename(arg) == "dagster" and i + 1 < len(argv):
            return list(argv[i:])
    return None


class PodProcess:
    """A pod's forked process as the kubelet sees it: a ``subprocess.Popen`` look-alike
    (pid, poll, wait, stdout lines) plus its CPU time and peak RSS once it has ended."""

    def __init__(self, conn: socket.socket):
        self._conn = conn
        self._file = conn.makefile("rb")
        first = self._file.readline()
        if not first.startswith(b"pid "):
            raise OSError(f"warm interpreter refused the pod: {first[:200]!r}")
        self.pid = int(first.split()[1])
        self.returncode: int | None = None
        self.cpu_seconds = 0.0
        self.max_rss_kib = 0
        self._done = threading.Event()

    def lines(self):
        """The pod's output, line by line, until it ends (its exit code is then set)."""
        try:
            for raw in iter(self._file.readline, b""):
                head, sep, tail = raw.partition(_EXIT)
                if head:
                    yield head
                if sep:
                    report = json.loads(tail)
                    self.returncode, self.cpu_seconds, self.max_rss_kib = (
                        report["code"], report["cpu"], report["maxrss"])
                    return
            self.returncode = 128 + signal.SIGKILL  # the supervisor died: as a killed container
        finally:
            self._done.set()
            self._file.close()
            self._conn.close()

    def poll(self) -> int | None:
        return self.returncode if self._done.is_set() else None

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired("pod", timeout or 0)
        assert self.returncode is not None
        return self.returncode


class WarmInterpreter:
    """The kubelet's side: starts the warm interpreter once and forks a process per pod."""

    def __init__(self, workdir: str, preload: Sequence[str] = PRELOAD):
        self.socket_path = os.path.join(workdir, "warm-pods.sock")
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._preload = tuple(preload)

    def _start(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return
            if os.path.exists(self.socket_path):
                os.unlink(self.socket_path)
            self._proc = subprocess.Popen(
                [sys.executable, "-m", __name__, self.socket_path, *self._preload],
                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True,
            )
            assert self._proc.stdout is not None
            ready = self._proc.stdout.readline()
            if ready.strip() != b"ready":
                raise OSError(f"the warm interpreter did not start (exit {self._proc.wait()})")

    def spawn(self, argv: Sequence[str], env: Mapping[str, str], cwd: str) -> PodProcess:
        self._start()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(self.socket_path)
        conn.sendall(json.dumps({"argv": list(argv), "env": dict(env), "cwd": cwd}).encode() + b"\n")
        return PodProcess(conn)

    def close(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                os.killpg(self._proc.pid, signal.SIGKILL)  # its pods are in sessions of their own
                self._proc.wait()
            if os.path.exists(self.socket_path):
                os.unlink(self.socket_path)


# ---- the warm interpreter itself (python -m ktx_dagster.testing.k8s_emulator.warm_pods) ----

def _run_dagster(argv: list[str], env: Mapping[str, str], cwd: str) -> int:
    """In the pod's process: become the pod (env, cwd, PYTHONPATH) and run the Dagster CLI."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    # PYTHONPATH is read at interpreter start, which this process did not have
    for entry in reversed([p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    from dagster._cli import main

    sys.argv = ["dagster", *argv[1:]]
    try:
        main()
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


def _supervise(conn: socket.socket) -> None:
    """In the supervisor: fork the pod, report its pid, wait, report its end."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # wait4 below needs its child un-reaped
    request = json.loads(conn.makefile("rb").readline())
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the pod
        os.close(go_w)
        os.setsid()  # the kubelet signals the pod's group, as for a process pod
        os.read(go_r, 1)  # after the supervisor sent our pid
        os.close(go_r)
        fd = conn.fileno()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        code = 1
        try:
            code = _run_dagster(request["argv"], request["env"], request["cwd"])
        except BaseException as exc:  # the pod fails as a process would, with its traceback
            import traceback

            traceback.print_exception(exc)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code & 0xFF)
    os.close(go_r)
    conn.sendall(f"pid {pid}\n".encode())
    os.write(go_w, b"x")
    os.close(go_w)
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:  # killed by a signal -> shell-style exit code, as the process kubelet reports
        code = 128 - code
    report = {"code": code, "cpu": usage.ru_utime + usage.ru_stime, "maxrss": usage.ru_maxrss}
    conn.sendall(_EXIT + json.dumps(report).encode() + b"\n")


def main(argv: Sequence[str]) -> int:
    socket_path, *preload = argv
    import importlib

    for name in preload:  # what every pod would import: once, before any fork
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path)
    server.listen(128)
    sys.stdout.buffer.write(b"ready\n")
    sys.stdout.flush()
    while True:
        conn, _ = server.accept()
        if os.fork() == 0:
            server.close()
            try:
                _supervise(conn)
            finally:
                os._exit(0)
        conn.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

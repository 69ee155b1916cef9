"""CPU-seconds of everything a benchmark starts, measured one way for every bench.

A process tree's CPU time is exact once its processes have ended and been reaped: the kernel
adds each reaped child's time (with the times of the children it reaped) to its parent's
RUSAGE_CHILDREN. Processes that outlive their parent (run processes forked by a fork server
whose parent exited) are re-parented to this process when it is a child subreaper
(PR_SET_CHILD_SUBREAPER), so nothing escapes. Processes still alive when the measurement ends
(a webserver and daemon a bench keeps running) cannot be counted that way: `CpuSampler`
samples them from /proc instead. Linux only.
"""

from __future__ import annotations

import ctypes
import os
import resource
import subprocess
import threading
import time

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process, so their CPU time reaches
    RUSAGE_CHILDREN once reaped; False where Linux's prctl is not available."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def children_cpu() -> float:
    """User + system seconds of every reaped descendant so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def reap_all(timeout: float = 60, *, keep: set[int] = frozenset()) -> None:
    """Wait for every child (orphans re-parented here included) but those in `keep`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if keep and _children() <= keep:
                return
            time.sleep(0.1)


def _children() -> set[int]:
    me = os.getpid()
    found = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        found.add(int(entry.name))
            except OSError:
                continue
    return found


def run_measured(cmd: list[str], **kwargs) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run `cmd`; its wall seconds and the CPU-seconds of it and every descendant (call
    become_subreaper() once first)."""
    before, started = children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    wall = time.perf_counter() - started
    reap_all()
    return proc, wall, children_cpu() - before


class CpuSampler(threading.Thread):
    """CPU seconds of the live processes of the given process groups, sampled from /proc.

    For processes that keep running past the measurement (a webserver, a daemon and what
    they fork); each process counts with its utime + stime at the last sample (every 0.2 s),
    so only the last moments of a process that ends are missed. Processes that are children
    of this process are left to RUSAGE_CHILDREN (children_cpu), which is exact.
    """

    def __init__(self, pgids: set[int], period: float = 0.2):
        super().__init__(daemon=True)
        self.pgids, self.period = set(pgids), period
        self.seen: dict[tuple[int, int], float] = {}  # (pid, start time) -> cpu seconds
        self.group_of: dict[tuple[int, int], int] = {}  # (pid, start time) -> process group
        self.stop_event = threading.Event()
        self.tick = os.sysconf("SC_CLK_TCK")

    def sample(self) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # after the command: state ppid pgrp ... utime(12) stime(13) ... starttime(20)
            if int(fields[2]) in self.pgids:
                key = (int(entry.name), int(fields[19]))
                self.seen[key] = (int(fields[11]) + int(fields[12])) / self.tick
                self.group_of[key] = int(fields[2])

    def run(self) -> None:
        while not self.stop_event.wait(self.period):
            self.sample()

    def total(self) -> float:
        self.stop_event.set()
        self.join(timeout=5)
        self.sample()
        return sum(self.seen.values())

    def by_group(self) -> dict[int, float]:
        """CPU seconds per process group (after total())."""
        groups: dict[int, float] = {}
        for key, cpu in self.seen.items():
            groups[self.group_of[key]] = groups.get(self.group_of[key], 0.0) + cpu
        return groups


def yardstick_seconds() -> float:
    """CPU-seconds of a fixed pure-Python loop (sum(range(10**7)), best of 3): how fast this
    machine's cores are today, so that figures from different machines (or a shared machine
    on different days) can be compared. Recorded in every bench's JSON line."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        sum(range(10**7))
        best = min(best, time.process_time() - start)
    return round(best, 4)

"""A Kubernetes step pod's entry point, around ``dagster api execute_step`` (see POD_COMMAND).

A pod that a node drain, a preemption or a spot interruption disrupts gets SIGTERM before it
is killed, and Dagster's step worker turns SIGTERM into a failure of the step (STEP_FAILURE,
"interrupted"): the run would fail, or a retry be used up, before the executor could see that
the pod was only disrupted and start the step again. So Dagster's step worker runs as a child
of this process, in a session of its own, and gets the SIGTERM only when its run is being
canceled (Dagster's own termination marks the run CANCELING before the executor deletes the
step's Job), or when that cannot be told. Any other SIGTERM is a disruption: the step goes on
until the kubelet's SIGKILL (or its own end), and the executor's health check, which sees the
pod's ``DisruptionTarget`` condition, starts it again as a new Job.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import signal
import subprocess
import sys
import zlib
from collections.abc import Mapping, Sequence

_PR_SET_PDEATHSIG = 1

# The pod's command. `python -m ktx_dagster.executors.step_worker` would first import the
# ktx_dagster package, and with it Dagster: ~45 MB more in every step pod, next to the step's
# own memory under the same limit. This finds the file without importing the package.
POD_COMMAND = (
    "python", "-c",
    "import importlib.util as u, sys; "
    "sys.path.insert(0, u.find_spec('ktx_dagster').submodule_search_locations[0] + '/executors'); "
    "import step_worker; sys.exit(step_worker.main(sys.argv[1:]))",
)


def _die_with_parent() -> None:
    """The child is SIGKILLed when this process dies: in a container the kubelet's SIGKILL
    ends the whole pid namespace anyway; on the emulator's process pods only our group."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the child outlives a SIGKILL, as before
        pass


def run_is_canceling(env: Mapping[str, str]) -> bool:
    """Is the run of the step in ``DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS`` being canceled (or
    over)? True also when that cannot be known, so the SIGTERM goes through as upstream."""
    try:
        import dagster as dg

        args = json.loads(zlib.decompress(base64.b64decode(env["DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS"])))
        run_id = args.get("pipeline_run_id") or args.get("run_id")
        ref = dg.deserialize_value(json.dumps(args["instance_ref"]))
        with dg.DagsterInstance.from_ref(ref) as instance:  # type: ignore[arg-type]
            run = instance.get_run_by_id(run_id)
        return run is None or run.is_finished or run.status == dg.DagsterRunStatus.CANCELING
    except Exception as exc:  # no args, no instance: behave as Dagster's own step worker
        print(f"ktx step worker: could not read the run's status ({exc!r}); passing SIGTERM on", file=sys.stderr,
              flush=True)
        return True


def main(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    if not argv:
        print("usage: python -m ktx_dagster.executors.step_worker COMMAND [ARG...]", file=sys.stderr)
        return 2
    child = subprocess.Popen(list(argv), start_new_session=True, preexec_fn=_die_with_parent)
    terms: list[int] = []
    signal.signal(signal.SIGTERM, lambda signo, _frame: terms.append(signo))
    signal.signal(signal.SIGINT, lambda signo, _frame: child.send_signal(signo))
    decided = False
    while True:
        try:
            code = child.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            pass
        if terms and not decided:
            decided = True
            if run_is_canceling(env):
                child.send_signal(signal.SIGTERM)
            else:
                print("ktx step worker: SIGTERM while the run is not being canceled: this pod is being disrupted "
                      "(evicted, preempted or its node drained); the step is not failed, the executor starts it "
                      "again as a new Job", file=sys.stderr, flush=True)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Fresh processes that start warm: one process per run, without an import bill per run.

A new Python process that imports dagster, pandas and pyarrow spends 1.5-2 s of CPU before it
does any work; Dagster's own run workers pay that for every run, i.e. for every partition of a
backfill. Here a fork server imports those libraries once and every run process is forked from
it: a fresh address space per run (its own memory, its own peak RSS, a crash kills only that
run) in milliseconds.

By default only third-party libraries are preloaded. The project's code is then imported in
each run process (about 0.5 s with resolving the definitions), after the run's environment is
applied, so an edited module or a changed KTX_* setting takes effect on the next run as it
would with a fresh interpreter: what the long-lived daemon needs. A caller whose code and
environment cannot change while it runs (the CLI) preloads the code location as well
(`preload_code_locations`) and saves that too.

`start_run` is the one way a run gets its process, for the CLI and the WarmRunLauncher alike:
the run exists in the instance already, and the process executes it as `dagster api
execute_run` would.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ktx_dagster.compat import PRELOAD_INTERNAL_MODULES

if TYPE_CHECKING:
    import dagster as dg

    from ktx_dagster.code_location import CodeLocation

# Imported once by the fork server; a module missing here is skipped by multiprocessing.
# (the dagster and pyarrow submodules: what a first instance and run import lazily, found by
# diffing sys.modules around one run)
PRELOAD = (
    "dagster",
    *PRELOAD_INTERNAL_MODULES,
    "numpy",
    "pandas",
    "pyarrow",
    "pyarrow.dataset",
    "pyarrow.pandas_compat",
    "pyarrow.parquet",
    "fsspec",
    "upath",
    "scipy.sparse",
    "dagster_k8s.executor",  # once per server, not per run, when steps go to Kubernetes
)


def context(preload: Sequence[str] = PRELOAD) -> multiprocessing.context.BaseContext:
    """The forkserver context; the server starts (and imports `preload`) at the first start()."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(preload))
    return ctx


def _enter(env: Mapping[str, str], cwd: str, log_path: str | None, target: Callable[..., Any], args: tuple) -> None:
    # The server was started with the environment of its first caller: apply this run's own.
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    if log_path:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    target(*args)


def start(
    target: Callable[..., Any],
    args: tuple = (),
    *,
    name: str | None = None,
    log_path: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    preload: Sequence[str] = PRELOAD,
) -> multiprocessing.process.BaseProcess:
    """Run `target(*args)` in a new process forked from the warm server; returns it started.

    env and cwd default to this process's current ones; stdout/stderr go to `log_path` if given.
    """
    ctx = context(preload)
    proc = ctx.Process(
        target=_enter,
        args=(dict(os.environ if env is None else env), cwd or os.getcwd(), log_path, target, args),
        name=name,
    )
    proc.start()
    return proc


# The fork server's environment names the code location it preloads (warm_definitions.py).
CODE_LOCATION_ENV = "KTX_WARM_CODE_LOCATION"


def preload_code_locations(locations: Sequence[CodeLocation], preload: Sequence[str] = PRELOAD) -> tuple[str, ...]:
    """The preload list that also imports and resolves `locations` once, in the fork server.

    Only for callers whose code and environment are fixed while they run (the CLI): the
    server keeps the code as it was when it started, and it starts once per process, so
    every location one call will run goes in here, before the first run.
    """
    os.environ[CODE_LOCATION_ENV] = json.dumps([location.to_json() for location in locations])
    return (*preload, "ktx_dagster.warm_definitions")


# The run's tag naming the process that executes it: termination signals it, run monitoring
# asks whether it is alive (run_launcher.py).
PID_TAG = "ktx/run-worker-pid"


def execute_run(run_id: str, instance_ref_json: str) -> None:
    """Body of a run process: what `dagster api execute_run` does after its imports."""
    import dagster as dg

    from ktx_dagster.compat import capture_interrupts, execute_run_command_body

    with capture_interrupts():
        with dg.DagsterInstance.from_ref(dg.deserialize_value(instance_ref_json)) as instance:
            # Recorded before the run can start: a STARTED run always names its process, so
            # neither termination nor run monitoring ever finds one without it.
            instance.add_run_tags(run_id, {PID_TAG: str(os.getpid())})
            code = execute_run_command_body(run_id, instance, lambda _event: None, set_exit_code_on_failure=False)
    sys.exit(code)


def start_run(
    run_id: str,
    instance: dg.DagsterInstance,
    *,
    preload: Sequence[str] = PRELOAD,
    log_path: str | None = None,
) -> multiprocessing.process.BaseProcess:
    """A fresh process, forked warm, executing the run `run_id` of `instance`."""
    import dagster as dg

    return start(
        execute_run, (run_id, dg.serialize_value(instance.get_ref())),
        name=f"dagster-run-{run_id[:8]}", log_path=log_path, preload=preload,
    )

"""Every Dagster and dagster-k8s internal that ktx-dagster uses, in one place.

ktx-dagster uses Dagster's public API wherever one exists (`dg.partition_loading_context`,
`dg.DefaultRunLauncher`, `dg.serialize_value`, `dg.multiprocess_executor`, ...). What follows
has no public equivalent in Dagster 1.13 / dagster-k8s 0.29: the pieces of a step-delegating
executor and of a run launcher, the body of `dagster api execute_run`, and the upstream-partitions result of
a custom PartitionMapping. Nothing else in the package imports `dagster._*` or an underscore
name of dagster-k8s, and `tests/test_compat.py` imports each name below, so a Dagster upgrade
that moves one fails that test (with the name) instead of a run in production.
"""

from __future__ import annotations

# --- a custom PartitionMapping (ChunkedPartitionMapping) ---------------------------------------
from dagster._core.definitions.partitions.mapping.partition_mapping import UpstreamPartitionsResult
from dagster._core.definitions.partitions.subset import PartitionsSubset

# --- loading a code location the way `dagster` / `dg` do ----------------------------------------
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.errors import DagsterImportError
from dagster._core.workspace.autodiscovery import (
    loadable_targets_from_python_file,
    loadable_targets_from_python_module,
)

# --- the `dagster` command line in a forked process (the emulated cluster's control-plane pods) --
from dagster._cli import main as dagster_cli_main
# --- executing a run in a process of our own (`dagster api execute_run`) -----------------------
from dagster._cli.api import _execute_run_command_body as execute_run_command_body
from dagster._utils.interrupts import capture_interrupts

# --- a run launcher (WarmRunLauncher) -----------------------------------------------------------
from dagster._core.launcher.base import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._serdes import ConfigurableClassData

# --- the local instance's SQLite storage, connections kept open (local_storage.py) -----------
# It overrides SqliteEventLogStorage._connect / _initdb and Sqlite{Run,Schedule}Storage.connect /
# from_local, and extends the watchdog of a run's database: tests/test_local_storage.py checks
# their shape.
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorageWatchdog
from dagster._core.storage.runs import SqliteRunStorage
from dagster._core.storage.schedules import SqliteScheduleStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS, create_db_conn_string

# --- the Kubernetes executor: dagster-k8s's step handler, our settings --------------------------
from dagster._core.events import EngineEventData
from dagster._core.execution.retries import RetryMode
from dagster._core.execution.step_dependency_config import StepDependencyConfig
from dagster._core.executor.step_delegating import (
    CheckStepHealthResult,
    StepDelegatingExecutor,
    StepHandlerContext,
)
from dagster._record import copy as copy_record
from dagster._utils.merger import merge_dicts



def step_handler_context_for_relaunch(context: StepHandlerContext) -> StepHandlerContext:
    """The same step's context, for starting it again after its pod was disrupted: the step
    worker must not verify the step (`dagster api execute_step` exits 0 without running it when
    the step already started, dagster-io/dagster#33755), since its first pod never ended it."""
    return StepHandlerContext(
        instance=context.instance,
        plan_context=context._plan_context,
        steps=list(context._steps_by_key.values()),
        execute_step_args=copy_record(context.execute_step_args, should_verify_step=False),
        dagster_run=context.dagster_run,
    )


# dagster-k8s (and the Kubernetes client under it) loads on first use: a local project
# should not pay ~0.3 s for it at every start.
_DAGSTER_K8S = {
    "K8S_EXECUTOR_CONFIG_SCHEMA": ("dagster_k8s.executor", "_K8S_EXECUTOR_CONFIG_SCHEMA"),
    "K8sStepHandler": ("dagster_k8s.executor", "K8sStepHandler"),
}


def __getattr__(name: str):
    if name in _DAGSTER_K8S:
        import importlib

        module, attribute = _DAGSTER_K8S[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'ktx_dagster.compat' has no attribute {name!r}")


# Modules the warm fork server imports once (what a first instance and run import lazily).
PRELOAD_INTERNAL_MODULES = (
    "dagster._cli.api",
    "dagster._core.execution.api",
    "dagster._core.executor.multiprocess",
    "dagster._core.instance.runs",
    "dagster._core.storage.local_compute_log_manager",
    "dagster._core.system_config.composite_descent",
    "dagster._core.storage.sqlite_storage",  # the instance's storage: sqlalchemy + alembic, 0.5 s
)

__all__ = [
    "CheckRunHealthResult",
    "CheckStepHealthResult",
    "ConfigurableClassData",
    "DagsterImportError",
    "dagster_cli_main",
    "EngineEventData",
    "K8S_EXECUTOR_CONFIG_SCHEMA",
    "K8sStepHandler",
    "LaunchRunContext",
    "PRELOAD_INTERNAL_MODULES",
    "PartitionsSubset",
    "ReconstructableRepository",
    "SQLITE_BUSY_TIMEOUT_SECONDS",
    "SqliteEventLogStorage",
    "SqliteEventLogStorageWatchdog",
    "SqliteRunStorage",
    "SqliteScheduleStorage",
    "RetryMode",
    "StepDelegatingExecutor",
    "StepDependencyConfig",
    "StepHandlerContext",
    "UpstreamPartitionsResult",
    "WorkerStatus",
    "capture_interrupts",
    "create_db_conn_string",
    "execute_run_command_body",
    "loadable_targets_from_python_file",
    "loadable_targets_from_python_module",
    "merge_dicts",
    "step_handler_context_for_relaunch",
]

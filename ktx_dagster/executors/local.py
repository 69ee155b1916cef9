"""The local executor: a process per step only when steps can run side by side.

A backfill is one run per partition, and each run already has a process of its own (the run
worker). Such a run is a chain (the task, then its checks): no two of its steps can ever run
at once, so a further process per step buys no parallelism and costs an interpreter start
and the imports of the code location for every partition. This executor looks at the
execution plan and

- runs a chain of steps in the run's own process (Dagster's in-process executor);
- runs anything with parallel branches with Dagster's multiprocess executor, forkserver start
  method, at most `max_concurrent` step processes at once.

`isolate_steps: true` (env `KTX_LOCAL_EXECUTOR=multiprocess`) always takes the multiprocess
path, e.g. to keep a leaky task's memory out of the run worker;
`KTX_LOCAL_EXECUTOR=in_process` never does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import dagster as dg

MODES = ("auto", "multiprocess", "in_process")


def is_chain(execution_plan) -> bool:
    """True when no two steps of the plan could run at the same time."""
    return all(len(level) <= 1 for level in execution_plan.get_steps_to_execute_by_level())


def mode_from_env() -> str:
    mode = os.environ.get("KTX_LOCAL_EXECUTOR", "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"KTX_LOCAL_EXECUTOR={mode!r} is not one of {', '.join(MODES)}")
    return mode


class LocalExecutor(dg.Executor):
    def __init__(self, mode: str, multiprocess: dg.Executor, in_process: dg.Executor):
        self.mode = mode
        self._multiprocess = multiprocess
        self._in_process = in_process

    @property
    def retries(self):
        return self._multiprocess.retries

    @property
    def step_dependency_config(self):
        return self._multiprocess.step_dependency_config

    def choose(self, execution_plan) -> dg.Executor:
        if self.mode == "in_process" or (self.mode == "auto" and is_chain(execution_plan)):
            return self._in_process
        return self._multiprocess

    def execute(self, plan_context, execution_plan) -> Iterator:
        chosen = self.choose(execution_plan)
        plan_context.log.debug(
            f"ktx local executor ({self.mode}): "
            + ("steps in the run's process" if chosen is self._in_process else "a process per step")
        )
        yield from chosen.execute(plan_context, execution_plan)


@dg.executor(
    name="ktx_local",
    config_schema={
        "max_concurrent": dg.Field(int, is_required=False, description="Step processes at once (multiprocess path)."),
        "isolate_steps": dg.Field(bool, is_required=False, description="Always one process per step."),
    },
    # what the multiprocess path needs: a reconstructable job, a persistent instance and outputs
    requirements=dg.multiprocess_executor.get_requirements({}),
)
def local_executor(init_context: dg.InitExecutorContext) -> LocalExecutor:
    config = init_context.executor_config
    mode = "multiprocess" if config.get("isolate_steps") else mode_from_env()

    def create(executor_def: dg.ExecutorDefinition, executor_config: dict) -> dg.Executor:
        # Dagster's own executors, built through their public definitions.
        return executor_def.executor_creation_fn(dg.InitExecutorContext(
            job=init_context.job, executor_def=executor_def, executor_config=executor_config,
            instance=init_context.instance,
        ))

    retries = {"enabled": {}}
    return LocalExecutor(
        mode,
        # forkserver: step processes fork from a server that has dagster and the code location
        # imported already, instead of a fresh interpreter importing them for every step.
        create(dg.multiprocess_executor, {"max_concurrent": config.get("max_concurrent"),
                                          "start_method": {"forkserver": {}}, "retries": retries}),
        create(dg.in_process_executor, {"retries": retries}),
    )

"""`@transformation`: a plain per-task function becomes a partitioned Dagster asset.

    @transformation(partitions=FilePartitions("hello_world_files", "hello_world/raw", "part_*.txt"),
                    cpu="200m", memory="250Mi", group="hello_world")
    def hello_world(context, data_dir: DataDir) -> str:
        ...  # one task: context.partition_key names the file

kube-transform's orchestration function becomes `partitions` (how the work is split), its
execution function becomes the body (one task), and its job config (cpu, memory) becomes
`TaskResources`, carried as op tags that the Kubernetes executor turns into pod requests.
"""

from __future__ import annotations

import datetime
import functools
import inspect
import os
import resource
import socket
import sys
import threading
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import dagster as dg
from threadpoolctl import threadpool_limits

from ktx_dagster.checks import Check, checked_after_output
from ktx_dagster.checks import check_specs as output_check_specs
from ktx_dagster.lazy import LazyPartitions
from ktx_dagster.partitions import SOURCE_METADATA_KEY, ChunkedPartitions, FilePartitions
from ktx_dagster.task_resources import STRAGGLERS_TOLD_BY_ENV, TaskResources
from ktx_dagster.keys import FORMAT_METADATA_KEY, LOAD_METADATA_KEY

PartitionsSpec = FilePartitions | ChunkedPartitions | dg.PartitionsDefinition | Sequence[str] | None
LoadMode = Literal["one", "many", "lazy"]


@dataclass(frozen=True)
class Upstream:
    """An upstream transformation an input reads, and which of its partitions.

    mapping: a Dagster PartitionMapping (default: Dagster's inference, identity for equal
    partitions). load: "one" object, "many" (dict key -> object) or "lazy" (LazyPartitions,
    key -> loader); inferred from the parameter's annotation when left out.
    """

    asset: str | dg.AssetKey | dg.AssetsDefinition
    mapping: dg.PartitionMapping | None = None
    load: LoadMode | None = None

    @property
    def key(self) -> dg.AssetKey:
        if isinstance(self.asset, dg.AssetsDefinition):
            return self.asset.key
        return dg.AssetKey.from_coercible(self.asset)


def partitions_definition(spec: PartitionsSpec) -> dg.PartitionsDefinition | None:
    if spec is None or isinstance(spec, dg.PartitionsDefinition):
        return spec
    if isinstance(spec, (FilePartitions, ChunkedPartitions)):
        return spec.definition
    if isinstance(spec, (list, tuple)):
        return dg.StaticPartitionsDefinition(list(spec))
    raise TypeError(
        f"partitions={spec!r}: use FilePartitions, ChunkedPartitions, a list of keys or a "
        "Dagster PartitionsDefinition"
    )


def _load_mode_from_annotation(annotation: Any) -> LoadMode | None:
    if annotation is LazyPartitions:
        return "lazy"
    origin = typing.get_origin(annotation) or annotation
    if origin in (dict, Mapping, typing.Mapping, typing.Dict):
        return "many"
    return None


def _retry_policy(retries: int | dg.RetryPolicy | None) -> dg.RetryPolicy | None:
    if retries is None or isinstance(retries, dg.RetryPolicy):
        return retries
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    if retries == 0:
        return None
    return dg.RetryPolicy(max_retries=retries, delay=2, backoff=dg.Backoff.EXPONENTIAL)


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS. In the multiprocess and k8s executors every
    # step is its own process, so this is the task's own peak.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def _straggler_timer(context: dg.AssetExecutionContext, label: str, expected: float | None,
                     start: float) -> threading.Timer | None:
    """Tell the run's log once, from the step's own process, when the task runs past its
    expected duration. Step pods leave it to the Kubernetes executor, which names the pod and
    node (KTX_STRAGGLERS_TOLD_BY=executor)."""
    if expected is None or os.environ.get(STRAGGLERS_TOLD_BY_ENV) == "executor":
        return None
    from ktx_dagster.compat import EngineEventData
    from ktx_dagster.executors.stragglers import straggler_message

    def tell() -> None:
        elapsed = time.perf_counter() - start
        where = f"process {os.getpid()} on host {socket.gethostname()}"
        context.instance.report_engine_event(
            straggler_message(label, elapsed, expected, where), context.run,
            EngineEventData(metadata={"ktx/straggler": True, "ktx/elapsed_seconds": round(elapsed, 1),
                                      "ktx/expected_seconds": expected, "ktx/pid": os.getpid(),
                                      "ktx/host": socket.gethostname()}),
            step_key=context.get_step_execution_context().step.key,
        )

    timer = threading.Timer(expected, tell)
    timer.daemon = True
    timer.start()
    return timer


def _with_task_logging(fn: Callable[..., Any], name: str, resources: TaskResources) -> Callable[..., Any]:
    """Log each task's start and end, and record its wall time and peak memory as metadata."""

    @functools.wraps(fn)
    def task(*args, **kwargs):
        context = dg.AssetExecutionContext.get()
        label = f"{name}[{context.partition_key}]" if context.has_partition_key else name
        context.log.info(f"task {label} started (requests cpu={resources.cpu} memory={resources.memory})")
        start = time.perf_counter()
        straggler = _straggler_timer(context, label, resources.expected_seconds, start)
        try:
            with threadpool_limits(limits=resources.native_threads()):
                result = fn(*args, **kwargs)
        finally:
            if straggler is not None:
                straggler.cancel()
        seconds = round(time.perf_counter() - start, 3)
        rss = _peak_rss_mb()
        context.log.info(f"task {label} finished in {seconds}s, peak RSS {rss} MiB")
        if not isinstance(result, (dg.MaterializeResult, dg.Output)):
            # "result" is the asset's output; naming it keeps this working when checks add outputs.
            context.add_output_metadata({"task_seconds": seconds, "task_peak_rss_mb": rss}, output_name="result")
        return result

    return task


def transformation(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    partitions: PartitionsSpec = None,
    inputs: Mapping[str, Upstream | str | dg.AssetsDefinition] | None = None,
    deps: Sequence[Any] | None = None,
    cpu: str = "500m",
    memory: str = "1Gi",
    memory_limit: str | None = None,
    memory_growth: float | None = None,
    max_memory: str | None = None,
    expected_duration: float | datetime.timedelta | None = None,
    ephemeral_storage: str | None = None,
    gpu: int = 0,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Mapping[str, Any]] = (),
    retries: int | dg.RetryPolicy | None = 0,
    format: str | None = None,
    description: str | None = None,
    group: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    check_specs: Sequence[dg.AssetCheckSpec] | None = None,
    checks: Sequence[Check] = (),
    io_manager_key: str = "io_manager",
) -> Any:
    """Turn a per-task function into a partitioned asset; usable bare or with arguments."""

    def decorate(fn: Callable[..., Any]) -> dg.AssetsDefinition:
        asset_name = name or fn.__name__
        task_resources = TaskResources(
            cpu=cpu, memory=memory, memory_limit=memory_limit, ephemeral_storage=ephemeral_storage,
            memory_growth=memory_growth, max_memory=max_memory, expected_duration=expected_duration,
            gpu=gpu, node_selector=dict(node_selector or {}), tolerations=tuple(tolerations), owner=asset_name,
        )
        if format is not None:
            from ktx_dagster.formats import format_by_name

            format_by_name(format)  # fail at definition time on a typo
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn) if fn.__annotations__ else {}

        ins: dict[str, dg.AssetIn] = {}
        for param, spec in (inputs or {}).items():
            if param not in signature.parameters:
                raise TypeError(
                    f"transformation {asset_name!r}: inputs names {param!r}, which is not a "
                    f"parameter of {fn.__name__}{signature}"
                )
            upstream = spec if isinstance(spec, Upstream) else Upstream(spec)
            load = upstream.load or _load_mode_from_annotation(hints.get(param))
            ins[param] = dg.AssetIn(
                key=upstream.key,
                partition_mapping=upstream.mapping,
                metadata={LOAD_METADATA_KEY: load} if load and load != "one" else None,
            )
        for param in signature.parameters:
            if param not in ins and hints.get(param) is LazyPartitions:
                ins[param] = dg.AssetIn(metadata={LOAD_METADATA_KEY: "lazy"})

        asset_metadata = {
            "ktx/cpu": task_resources.cpu,
            "ktx/memory": task_resources.memory,
            **({FORMAT_METADATA_KEY: format} if format else {}),
            # where the partitions come from: `sync`, the CLI and the file sensors read it here
            **({SOURCE_METADATA_KEY: partitions.to_metadata()} if isinstance(partitions, (FilePartitions, ChunkedPartitions)) else {}),
            **dict(metadata or {}),
        }
        body = _with_task_logging(fn, asset_name, task_resources)
        specs = list(check_specs or [])
        if checks:
            # checks run in the task's own step, after its output is stored (one pod, not two)
            key = dg.AssetKey([asset_name])
            specs += output_check_specs(key, checks, partitions_definition(partitions))
            body = checked_after_output(body, key, checks)
        return dg.asset(
            body,
            name=asset_name,
            ins=ins or None,
            deps=deps,
            partitions_def=partitions_definition(partitions),
            op_tags=task_resources.op_tags(asset_name),
            retry_policy=_retry_policy(retries),
            description=description or inspect.getdoc(fn),
            group_name=group,
            metadata=asset_metadata,
            check_specs=specs or None,
            io_manager_key=io_manager_key,
            kinds={"python"},
        )

    return decorate(fn) if fn is not None else decorate

"""Container contexts: what every step Job gets on top of the settings, the GPU toleration,
and a context whose job config needs no K8sRunLauncher."""

from __future__ import annotations

from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import DagsterK8sJobConfig, UserDefinedDagsterK8sConfig
from dagster_k8s.launcher import K8sRunLauncher

from collections.abc import Sequence
from typing import Any

from ktx_dagster.executors import step_worker
from ktx_dagster.executors.k8s.diagnosis import DISRUPTION_CONDITION
from ktx_dagster.executors.k8s.labels import PARTITION_KEY_ANNOTATION, step_labels
from ktx_dagster.executors.k8s.settings import K8sSettings
from ktx_dagster.task_resources import STRAGGLERS_TOLD_BY_ENV


GPU_RESOURCE = "nvidia.com/gpu"



def step_pod_context() -> K8sContainerContext:
    """What every step Job gets on top of the settings: the step worker's entry point, a pod
    failure policy that fails the Job (never re-creates the pod) on a disruption, so the Job's
    condition names it even after the evicted pod is gone, and the word that this executor
    tells stragglers (the step's own process does elsewhere)."""
    return K8sContainerContext(env=[{"name": STRAGGLERS_TOLD_BY_ENV, "value": "executor"}],
                               run_k8s_config=UserDefinedDagsterK8sConfig.from_dict({
        # Dagster's step worker under a process that keeps a disruption's SIGTERM from failing
        # the step; the args stay `dagster api execute_step`.
        "container_config": {"command": list(step_worker.POD_COMMAND)},
        "job_spec_config": {"podFailurePolicy": {"rules": [
            {"action": "FailJob", "onPodConditions": [{"type": DISRUPTION_CONDITION, "status": "True"}]},
        ]}},
    }))



def step_container_context(
    settings: K8sSettings,
    *,
    transformation: str,
    partition: str | None,
    step_configs: Sequence[UserDefinedDagsterK8sConfig],
    overrides: Sequence[K8sContainerContext] = (),
) -> K8sContainerContext:
    """One step's container context; the step handler and the manifest renderer both build it here.

    In order, each overriding what came before: the settings' base and what every step Job
    gets; `overrides` (the handler's: a K8sRunLauncher's and the code location's context, then
    the executor's run config); `step_configs` (the op tag ``dagster-k8s/config``, then the
    executor's per-step config); the ktx labels and the raw partition key as an annotation;
    the GPU toleration when a GPU is requested.
    """
    context = settings.base_container_context().merge(step_pod_context())
    for override in overrides:
        context = context.merge(override)
    for config in step_configs:
        context = context.merge(K8sContainerContext(run_k8s_config=config))
    labels = step_labels(transformation, partition)
    extra: dict[str, Any] = {"job_metadata": {"labels": labels}, "pod_template_spec_metadata": {"labels": labels}}
    if partition is not None:
        extra["job_metadata"]["annotations"] = {PARTITION_KEY_ANNOTATION: partition}
        extra["pod_template_spec_metadata"]["annotations"] = {PARTITION_KEY_ANNOTATION: partition}
    context = context.merge(K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(extra)))
    return _add_gpu_toleration(context)


def _context_class(settings: K8sSettings) -> type[K8sContainerContext]:
    """A K8sContainerContext whose job config does not need a K8sRunLauncher."""

    class KtxContainerContext(K8sContainerContext):
        __slots__ = ()

        def get_k8s_job_config(self, job_image, run_launcher) -> DagsterK8sJobConfig:  # type: ignore[override]
            if isinstance(run_launcher, K8sRunLauncher):
                return super().get_k8s_job_config(job_image, run_launcher)
            return settings.job_config(job_image)

    return KtxContainerContext



def _as_class(context: K8sContainerContext, cls: type[K8sContainerContext]) -> K8sContainerContext:
    return cls(
        server_k8s_config=context.server_k8s_config,
        run_k8s_config=context.run_k8s_config,
        namespace=context.namespace,
        server_replica_count=context.server_replica_count,
    )



def _add_gpu_toleration(context: K8sContainerContext) -> K8sContainerContext:
    """GPU nodes (EKS Auto Mode, most managed pools) are tainted nvidia.com/gpu:NoSchedule."""
    resources = context.run_k8s_config.container_config.get("resources") or {}
    wants_gpu = any(GPU_RESOURCE in (resources.get(k) or {}) for k in ("limits", "requests"))
    if not wants_gpu:
        return context
    tolerations = context.run_k8s_config.pod_spec_config.get("tolerations") or []
    if any((t or {}).get("key") == GPU_RESOURCE for t in tolerations):
        return context
    return context.merge(
        K8sContainerContext(
            run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
                {"pod_spec_config": {"tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]}}
            )
        )
    )

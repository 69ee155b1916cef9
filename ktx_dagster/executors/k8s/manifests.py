"""The Job manifest of one step, without a Dagster run (static checks, kubectl --dry-run)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import UserDefinedDagsterK8sConfig

from ktx_dagster.executors.k8s.container_context import _add_gpu_toleration, step_pod_context
from ktx_dagster.executors.k8s.labels import PARTITION_KEY_ANNOTATION, step_labels
from ktx_dagster.executors.k8s.settings import K8sSettings


def render_step_job(
    settings: K8sSettings,
    *,
    transformation: str,
    partition: str | None,
    k8s_config: Mapping[str, Any],
    job_name: str = "dagster-step-0123456789abcdef0123456789abcdef",
    args: Sequence[str] = ("dagster", "api", "execute_step"),
) -> dict[str, Any]:
    """The Job manifest the executor builds for one step, without a Dagster run.

    Same merge order as :meth:`KtxK8sStepHandler._get_container_context` (settings, op
    tag ``dagster-k8s/config``, ktx labels) and the same upstream ``construct_dagster_k8s_job``;
    used by the static checks and handy for ``kubectl apply --dry-run=server``.
    """
    import kubernetes.client
    from dagster_k8s.job import construct_dagster_k8s_job, get_user_defined_k8s_config

    context = settings.base_container_context().merge(step_pod_context())
    context = context.merge(
        K8sContainerContext(
            run_k8s_config=get_user_defined_k8s_config({"dagster-k8s/config": json.dumps(dict(k8s_config))})
        )
    )
    labels = step_labels(transformation, partition)
    extra: dict[str, Any] = {"job_metadata": {"labels": labels}, "pod_template_spec_metadata": {"labels": labels}}
    if partition is not None:
        extra["job_metadata"]["annotations"] = {PARTITION_KEY_ANNOTATION: partition}
        extra["pod_template_spec_metadata"]["annotations"] = {PARTITION_KEY_ANNOTATION: partition}
    context = _add_gpu_toleration(
        context.merge(K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(extra)))
    )
    job = construct_dagster_k8s_job(
        job_config=settings.job_config(None),
        args=list(args),
        job_name=job_name,
        pod_name=job_name,
        component="step_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/job": "__ASSET_JOB", "dagster/op": transformation},
        env_vars=[{"name": "DAGSTER_RUN_STEP_KEY", "value": transformation}],
    )
    body = kubernetes.client.ApiClient().sanitize_for_serialization(job)
    body["metadata"]["namespace"] = settings.namespace
    return body

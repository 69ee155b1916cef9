"""The Job manifest of one step, without a Dagster run (static checks, kubectl --dry-run)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ktx_dagster.executors.k8s.container_context import step_container_context
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

    The step handler's container context (:func:`step_container_context`, without a run's
    overrides) and the same upstream ``construct_dagster_k8s_job``; used by the static checks
    and handy for ``kubectl apply --dry-run=server``.
    """
    import kubernetes.client
    from dagster_k8s.job import construct_dagster_k8s_job, get_user_defined_k8s_config

    context = step_container_context(
        settings, transformation=transformation, partition=partition,
        step_configs=(get_user_defined_k8s_config({"dagster-k8s/config": json.dumps(dict(k8s_config))}),),
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

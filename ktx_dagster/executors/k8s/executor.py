"""The executor definitions: dagster-k8s's k8s_job_executor config, ktx defaults from K8sSettings."""

from __future__ import annotations

from typing import Any, cast

from dagster import Executor, Field, Float, InitExecutorContext, IntSource, executor, multiprocess_executor
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import UserDefinedDagsterK8sConfig
from dagster_k8s.launcher import K8sRunLauncher

from ktx_dagster.compat import (
    K8S_EXECUTOR_CONFIG_SCHEMA,
    RetryMode,
    StepDelegatingExecutor,
    StepDependencyConfig,
    merge_dicts,
)
from ktx_dagster.executors.k8s.settings import DEPLOYMENTS, K8sSettings
from ktx_dagster.executors.k8s.step_handler import KtxK8sStepHandler


_KTX_EXECUTOR_CONFIG_SCHEMA = merge_dicts(
    K8S_EXECUTOR_CONFIG_SCHEMA,
    {
        "check_step_health_interval_seconds": Field(
            IntSource,
            is_required=False,
            description="Seconds between Job health checks (default KTX_STEP_HEALTH_CHECK_SECONDS or 20).",
        ),
        "step_poll_interval_seconds": Field(
            Float,
            is_required=False,
            description="Seconds between the run worker's looks for its steps' events "
            "(default KTX_STEP_POLL_SECONDS or 0.25; Dagster's own default is 1).",
        ),
    },
)



@executor(
    name="ktx_k8s",
    config_schema=_KTX_EXECUTOR_CONFIG_SCHEMA,
    requirements=multiprocess_executor.get_requirements({}),
)
def ktx_k8s_job_executor(init_context: InitExecutorContext) -> Executor:
    return _build_executor(init_context, None)



def _build_executor(init_context: InitExecutorContext, deployment: str | None) -> Executor:
    """dagster-k8s's ``k8s_job_executor`` with ktx defaults from :class:`K8sSettings`.

    Accepts the same run config as ``k8s_job_executor`` (``job_namespace``, ``job_image``,
    ``step_k8s_config``, ``per_step_k8s_config``, ``max_concurrent``, ``retries`` ...);
    unset fields fall back to the environment (``K8sSettings.from_env()``), or, for the
    kubeconfig, to a ``K8sRunLauncher`` on the instance.
    """
    exc_cfg = init_context.executor_config
    # Read at executor-init time (in the run worker), so a laptop's env and a run pod's env
    # each apply where the steps are launched from.
    settings = K8sSettings.from_env(deployment)
    run_launcher = init_context.instance.run_launcher
    k8s_launcher = run_launcher if isinstance(run_launcher, K8sRunLauncher) else None

    container_context = K8sContainerContext(
        image_pull_policy=exc_cfg.get("image_pull_policy"),  # type: ignore[arg-type]
        image_pull_secrets=exc_cfg.get("image_pull_secrets"),  # type: ignore[arg-type]
        service_account_name=exc_cfg.get("service_account_name"),  # type: ignore[arg-type]
        env_config_maps=exc_cfg.get("env_config_maps"),  # type: ignore[arg-type]
        env_secrets=exc_cfg.get("env_secrets"),  # type: ignore[arg-type]
        env_vars=exc_cfg.get("env_vars"),  # type: ignore[arg-type]
        volume_mounts=exc_cfg.get("volume_mounts"),  # type: ignore[arg-type]
        volumes=exc_cfg.get("volumes"),  # type: ignore[arg-type]
        labels=exc_cfg.get("labels"),  # type: ignore[arg-type]
        namespace=exc_cfg.get("job_namespace"),  # type: ignore[arg-type]
        resources=exc_cfg.get("resources"),  # type: ignore[arg-type]
        scheduler_name=exc_cfg.get("scheduler_name"),  # type: ignore[arg-type]
        security_context=exc_cfg.get("security_context"),  # type: ignore[arg-type]
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(exc_cfg.get("step_k8s_config", {})),
    )

    if "load_incluster_config" in exc_cfg:
        load_incluster_config = cast(bool, exc_cfg["load_incluster_config"])
    elif k8s_launcher is not None:
        load_incluster_config = k8s_launcher.load_incluster_config
    else:
        load_incluster_config = settings.in_cluster
    if "kubeconfig_file" in exc_cfg:
        kubeconfig_file = cast("str | None", exc_cfg["kubeconfig_file"])
    elif k8s_launcher is not None:
        kubeconfig_file = k8s_launcher.kubeconfig_file
    else:
        kubeconfig_file = None if load_incluster_config else settings.kubeconfig

    max_concurrent = exc_cfg.get("max_concurrent", settings.max_concurrent)
    return StepDelegatingExecutor(
        KtxK8sStepHandler(
            settings=settings,
            image=cast("str | None", exc_cfg.get("job_image")),
            container_context=container_context,
            load_incluster_config=load_incluster_config,
            kubeconfig_file=kubeconfig_file,
            per_step_k8s_config=cast(dict, exc_cfg.get("per_step_k8s_config", {})),
            enable_owner_references=bool(exc_cfg.get("enable_owner_references") or False),
        ),
        retries=RetryMode.from_config(exc_cfg["retries"]),  # type: ignore[arg-type]
        max_concurrent=cast("int | None", max_concurrent),
        tag_concurrency_limits=list(exc_cfg.get("tag_concurrency_limits") or []),
        should_verify_step=True,
        check_step_health_interval_seconds=cast(
            int, exc_cfg.get("check_step_health_interval_seconds", settings.health_check_seconds)
        ),
        sleep_seconds=float(exc_cfg.get("step_poll_interval_seconds", settings.step_poll_seconds)),
        step_dependency_config=StepDependencyConfig.from_config(
            exc_cfg.get("step_dependency_config")  # type: ignore[arg-type]
        ),
    )



def k8s_executor(deployment: str) -> Any:
    """The executor for ``KTX_DEPLOYMENT=minikube|eks``; settings are read when a run starts."""
    dep = deployment.strip().lower()
    if dep not in DEPLOYMENTS:
        raise ValueError(f"k8s_executor: deployment {deployment!r} is not one of {', '.join(DEPLOYMENTS)}")
    if dep == "eks":
        # Fail at load time, not in the middle of a run, when the data dir is unusable.
        K8sSettings.from_env(dep)
    return _with_deployment(dep)



def _with_deployment(dep: str) -> Any:
    @executor(
        name=f"ktx_k8s_{dep}",
        config_schema=_KTX_EXECUTOR_CONFIG_SCHEMA,
        requirements=multiprocess_executor.get_requirements({}),
    )
    def _executor(init_context: InitExecutorContext) -> Executor:
        return _build_executor(init_context, dep)

    return _executor

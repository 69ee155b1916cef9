"""KtxK8sStepHandler: dagster-k8s's step handler with ktx settings, labels, clear failures and
memory growth after an OOM kill; what it watches in the pods is pod_watch.py."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, cast

from dagster import DagsterEvent
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import UserDefinedDagsterK8sConfig
from dagster_k8s.launcher import K8sRunLauncher

from ktx_dagster.compat import CheckStepHealthResult, EngineEventData, K8sStepHandler, StepHandlerContext
from ktx_dagster.executors.k8s.cluster_access import check_cluster_access, kubeconfig_source
from ktx_dagster.executors.k8s.container_context import _as_class, _context_class, step_container_context
from ktx_dagster.executors.k8s.diagnosis import disruption_diagnosis, grown_memory, oom_diagnosis
from ktx_dagster.executors.k8s.pod_watch import PARTITION_RUN_TAG, TRANSFORMATION_TAG, StepPodWatch
from ktx_dagster.executors.k8s.settings import K8sSettings
from ktx_dagster.task_resources import MAX_MEMORY_TAG, MEMORY_GROWTH_TAG


class KtxK8sStepHandler(StepPodWatch, K8sStepHandler):
    """``K8sStepHandler`` + default-run-launcher support, ktx labels and better failures."""

    def __init__(self, *, settings: K8sSettings, **kwargs: Any):
        self._settings = settings
        self._context_cls = _context_class(settings)
        # (run, step, attempt) -> the grown memory of a retry after an OOM kill, or None
        self._grown: dict[tuple[str, str, int], dict[str, Any] | None] = {}
        # (run, step, attempt) -> Jobs started again after a disruption; the newest is the step's
        self._relaunches: dict[tuple[str, str, int], int] = {}
        # (run, step, attempt) -> what the last health check saw of its running pod
        self._seen_pods: dict[tuple[str, str, int], dict[str, Any]] = {}
        self._stragglers_told: set[tuple[str, str]] = set()
        if not kwargs.get("load_incluster_config"):
            kubeconfig = kwargs.get("kubeconfig_file")
            source = kubeconfig_source() if kubeconfig == settings.kubeconfig else "the executor's kubeconfig_file"
            check_cluster_access(kubeconfig, settings.kube_context, source)
        super().__init__(**kwargs)
        if settings.kube_context and not kwargs.get("load_incluster_config"):
            # Upstream loads the kubeconfig's current-context; honour KTX_KUBE_CONTEXT.
            import kubernetes.config
            from dagster_k8s.client import DagsterKubernetesClient

            kubernetes.config.load_kube_config(kwargs.get("kubeconfig_file"), context=settings.kube_context)
            self._api_client = DagsterKubernetesClient.production_client()

    @property
    def name(self) -> str:
        return "KtxK8sStepHandler"

    def _get_container_context(self, step_handler_context: StepHandlerContext) -> K8sContainerContext:
        step_key = self._get_step_key(step_handler_context)
        run = step_handler_context.dagster_run
        run_launcher = step_handler_context.instance.run_launcher
        k8s_launcher = run_launcher if isinstance(run_launcher, K8sRunLauncher) else None

        from dagster_k8s.job import get_user_defined_k8s_config

        # Upstream passes the instance's run launcher unconditionally (AttributeError on
        # DefaultRunLauncher): we pass a K8sRunLauncher's context only when there is one.
        step_tags = step_handler_context.step_tags[step_key]
        op_name = step_handler_context.get_step_context(step_key).step.op_name
        context = step_container_context(
            self._settings,
            transformation=step_tags.get(TRANSFORMATION_TAG) or op_name,
            partition=run.tags.get(PARTITION_RUN_TAG),
            overrides=(K8sContainerContext.create_for_run(run, k8s_launcher, include_run_tags=False),
                       self._executor_container_context),
            step_configs=(get_user_defined_k8s_config(step_tags),
                          UserDefinedDagsterK8sConfig.from_dict(self._per_step_k8s_config.get(op_name, {}))),
        )
        context = self._grow_memory_after_oom(step_handler_context, step_key, step_tags, context)
        return _as_class(context, self._context_cls)

    def _grow_memory_after_oom(self, step_handler_context: StepHandlerContext, step_key: str,
                               step_tags: Mapping[str, str], context: K8sContainerContext) -> K8sContainerContext:
        """A retry of a transformation with memory_growth, after an attempt that was OOMKilled,
        asks for memory x growth per attempt (request and limit), at most its max_memory."""
        growth = step_tags.get(MEMORY_GROWTH_TAG)
        known = step_handler_context.execute_step_args.known_state
        attempt = known.get_retry_state().get_attempt_count(step_key) if known else 0
        if not growth or not attempt:
            return context
        cache_key = (step_handler_context.execute_step_args.run_id, step_key, attempt)
        if cache_key not in self._grown:
            self._grown[cache_key] = None
            previous = self._job_name(step_handler_context, step_key, attempt - 1)
            pod, _ = self._failed_pod(previous, cast(str, context.namespace))
            if pod is not None and oom_diagnosis(pod) is not None:
                resources = (context.run_k8s_config.container_config or {}).get("resources") or {}
                self._grown[cache_key] = grown_memory(resources, float(growth), step_tags.get(MAX_MEMORY_TAG), attempt)
        grown = self._grown[cache_key]
        if grown is None:
            return context
        return context.merge(K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
            {"container_config": {"resources": grown["resources"]}})))

    def _job_name(self, step_handler_context: StepHandlerContext, step_key: str, attempt: int) -> str:
        """The Job of an attempt of a step: upstream's name, then -r<n> once started again after
        <n> disruptions."""
        from dagster_k8s.job import get_k8s_job_name

        run_id = step_handler_context.execute_step_args.run_id
        name = "dagster-step-" + get_k8s_job_name(run_id, step_key)
        name = name if attempt == 0 else f"{name}-{attempt}"
        relaunches = self._relaunches.get((run_id, step_key, attempt), 0)
        return f"{name}-r{relaunches}" if relaunches else name

    def _attempt(self, step_handler_context: StepHandlerContext) -> tuple[str, str, int]:
        step_key = self._get_step_key(step_handler_context)
        known = step_handler_context.execute_step_args.known_state
        attempt = known.get_retry_state().get_attempt_count(step_key) if known else 0
        return step_handler_context.execute_step_args.run_id, step_key, attempt

    def _get_k8s_step_job_name(self, step_handler_context: StepHandlerContext) -> str:
        # Upstream's launch, health check and terminate all find the Job by this name.
        return self._job_name(step_handler_context, *self._attempt(step_handler_context)[1:])

    def launch_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        # Upstream falls back to the code location's image when the executor has none; we
        # resolve the image the same way but with KTX_IMAGE before "no image" errors.
        run_launcher = step_handler_context.instance.run_launcher
        launcher_image = run_launcher.job_image if isinstance(run_launcher, K8sRunLauncher) else None
        container_image = step_handler_context.execute_step_args.job_origin.repository_origin.container_image
        if not self._executor_image and not launcher_image and not container_image:
            self._executor_image = self._settings.image
        yield from super().launch_step(step_handler_context)
        step_key = self._get_step_key(step_handler_context)
        known = step_handler_context.execute_step_args.known_state
        attempt = known.get_retry_state().get_attempt_count(step_key) if known else 0
        grown = self._grown.get((step_handler_context.execute_step_args.run_id, step_key, attempt))
        if grown is not None:
            yield DagsterEvent.engine_event(
                step_handler_context.get_step_context(step_key),
                f"Attempt {attempt + 1} of {step_key} asks for {grown['memory']} of memory (was {grown['was']}): "
                "the previous attempt was OOMKilled (memory_growth)",
                EngineEventData(metadata={"ktx/memory": grown["memory"], "ktx/memory_was": grown["was"]}),
            )

    def check_step_health(self, step_handler_context: StepHandlerContext) -> CheckStepHealthResult:
        result = super().check_step_health(step_handler_context)
        job_name = self._get_k8s_step_job_name(step_handler_context)
        namespace = cast(str, self._get_container_context(step_handler_context).namespace)
        if result.is_healthy:
            self._watch_running_pod(step_handler_context, job_name, namespace)
            return result
        pod, details = self._failed_pod(job_name, namespace)
        disruption = disruption_diagnosis(pod, self._job_failure(job_name, namespace),
                                          self._seen_pods.get(self._attempt(step_handler_context)))
        if disruption is not None:
            return self._start_again_after_disruption(step_handler_context, job_name, disruption, result, details)
        oom = oom_diagnosis(pod) if pod is not None else None
        if oom is None:
            return CheckStepHealthResult.unhealthy(reason=f"{result.unhealthy_reason}\n\n{details}")
        # Told plainly, first; and as metadata in the event log, so a failure sensor can
        # tell an out-of-memory kill from any other failure.
        step_key = self._get_step_key(step_handler_context)
        DagsterEvent.engine_event(
            step_handler_context.get_step_context(step_key), oom["message"],
            EngineEventData(metadata={f"ktx/{k}": v for k, v in oom.items() if k != "message"}),
        )
        return CheckStepHealthResult.unhealthy(reason=f"{oom['message']}\n\n{result.unhealthy_reason}\n\n{details}")

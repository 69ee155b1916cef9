"""What the step handler watches in a step's pods: a disruption (the step starts again as a new
Job), a straggler (told once), and the failed pod behind a failed Job."""

from __future__ import annotations

import re
from typing import Any

from dagster import DagsterEvent

from ktx_dagster.compat import (
    CheckStepHealthResult,
    EngineEventData,
    StepHandlerContext,
    step_handler_context_for_relaunch,
)
from ktx_dagster.executors.k8s.diagnosis import DISRUPTION_CONDITION, _disruption_condition
from ktx_dagster.executors.stragglers import straggler_message
from ktx_dagster.task_resources import EXPECTED_DURATION_TAG

TRANSFORMATION_TAG = "ktx/transformation"
PARTITION_RUN_TAG = "dagster/partition"
MAX_DISRUPTION_RELAUNCHES = 3


class StepPodWatch:
    """KtxK8sStepHandler's watch over its step pods (its state lives on the handler)."""

    def _start_again_after_disruption(self, step_handler_context: StepHandlerContext, job_name: str,
                                      disruption: dict[str, Any], result: CheckStepHealthResult,
                                      details: str) -> CheckStepHealthResult:
        """A disrupted pod is not a failed step: launch it again as a new Job, say so, and stay
        healthy; after MAX_DISRUPTION_RELAUNCHES of them, fail it plainly."""
        attempt = self._attempt(step_handler_context)
        step_key = attempt[1]
        step_context = step_handler_context.get_step_context(step_key)
        where = _step_where(step_handler_context, step_key)
        told = (f"{where}: its pod {disruption['pod']} on node {disruption['node']} was disrupted "
                f"({disruption['reason']}: {disruption['message']})")
        relaunches = self._relaunches.get(attempt, 0)
        if relaunches >= MAX_DISRUPTION_RELAUNCHES:
            return CheckStepHealthResult.unhealthy(
                reason=f"{told}, for the {relaunches + 1}th time; ktx started the step again {relaunches} times after "
                       "disruptions and stops here. Look at what disrupts the pods (node drains, spot interruptions, "
                       f"preemption by higher-priority pods) and run the partition again.\n\n{result.unhealthy_reason}"
                       f"\n\n{details}")
        self._relaunches[attempt] = relaunches + 1
        self._seen_pods.pop(attempt, None)
        new_job = self._get_k8s_step_job_name(step_handler_context)
        DagsterEvent.engine_event(
            step_context,
            f"{told}. That is not a failure of the step: it starts again as Kubernetes Job {new_job} "
            f"(restart {relaunches + 1} of at most {MAX_DISRUPTION_RELAUNCHES} after disruptions; the step's retries "
            "are not used).",
            EngineEventData(metadata={"ktx/disruption_reason": disruption["reason"], "ktx/pod": disruption["pod"],
                                      "ktx/node": disruption["node"], "ktx/disrupted_job": job_name,
                                      "ktx/new_job": new_job, "ktx/restart": relaunches + 1}),
        )
        try:
            list(self.launch_step(step_handler_context_for_relaunch(step_handler_context)))
        except Exception as exc:  # say so as the step's failure, not as a Job that "could not be found"
            return CheckStepHealthResult.unhealthy(
                reason=f"{told}; starting it again as Kubernetes Job {new_job} failed: {exc!r}\n\n{details}")
        return CheckStepHealthResult.healthy()

    def _watch_running_pod(self, step_handler_context: StepHandlerContext, job_name: str, namespace: str) -> None:
        """Remember the step's pod and node (and a DisruptionTarget while it terminates: on a
        real cluster the pod is gone once its Job has counted it), and tell a straggler once."""
        try:
            pods = self._api_client.get_pods_in_job(job_name, namespace)
        except Exception:  # best effort: the health check itself already succeeded
            return
        if not pods:
            return
        pod = sorted(pods, key=lambda p: p.metadata.creation_timestamp or 0)[-1]
        attempt = self._attempt(step_handler_context)
        seen = {"pod": pod.metadata.name, "node": (pod.spec.node_name if pod.spec else None) or "unknown"}
        condition = _disruption_condition(pod)
        if condition is not None:
            seen.update(reason=condition.reason or DISRUPTION_CONDITION, message=condition.message or "")
        self._seen_pods[attempt] = seen
        started = pod.status.start_time if pod.status else None
        expected = step_handler_context.step_tags[attempt[1]].get(EXPECTED_DURATION_TAG)
        if not expected or started is None or attempt[:2] in self._stragglers_told:
            return
        import datetime as dt

        elapsed = (dt.datetime.now(dt.timezone.utc) - started).total_seconds()
        if elapsed <= float(expected):
            return
        self._stragglers_told.add(attempt[:2])
        DagsterEvent.engine_event(
            step_handler_context.get_step_context(attempt[1]),
            straggler_message(_step_where(step_handler_context, attempt[1]), elapsed, float(expected),
                              f"pod {seen['pod']} on node {seen['node']}"),
            EngineEventData(metadata={"ktx/straggler": True, "ktx/elapsed_seconds": round(elapsed, 1),
                                      "ktx/expected_seconds": float(expected), "ktx/pod": seen["pod"],
                                      "ktx/node": seen["node"]}),
        )

    def _job_failure(self, job_name: str, namespace: str) -> Any:
        """The Job's Failed condition (None if it has none or cannot be read)."""
        try:
            job = self._api_client.batch_api.read_namespaced_job_status(job_name, namespace)
        except Exception:
            return None
        conditions = (job.status.conditions or []) if job.status else []
        return next((c for c in conditions if c.type == "Failed" and c.status == "True"), None)

    def _failed_pod(self, job_name: str, namespace: str) -> tuple[Any, str]:
        """The job's most recent failed pod and its status and log tail (best effort)."""
        try:
            pods = self._api_client.get_pods_in_job(job_name, namespace)
        except Exception as exc:  # the API may be flaky; the health result must still go out
            return None, f"(could not list pods of job {job_name}: {exc})"
        if not pods:
            return None, f"(job {job_name} has no pods)"
        failed = [p for p in pods if p.status and p.status.phase == "Failed"] or pods
        pod = sorted(failed, key=lambda p: p.metadata.creation_timestamp or 0)[-1]
        try:
            return pod, self._api_client.get_pod_debug_info(pod.metadata.name, namespace, pod=pod)
        except Exception as exc:
            return pod, f"(could not fetch debug info of pod {pod.metadata.name}: {exc})"


def _step_where(step_handler_context: StepHandlerContext, step_key: str) -> str:
    """transformation[partition] of a step, as the run's log names it."""
    tags = step_handler_context.step_tags[step_key]
    transformation = tags.get(TRANSFORMATION_TAG) or step_handler_context.get_step_context(step_key).step.op_name
    partition = step_handler_context.dagster_run.tags.get(PARTITION_RUN_TAG)
    return f"{transformation}[{partition}]" if partition is not None else transformation

"""Why a step pod ended: out of memory (and the memory of the retry) or disrupted."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ktx_dagster.executors.k8s.labels import PARTITION_KEY_ANNOTATION, TRANSFORMATION_LABEL


DISRUPTION_CONDITION = "DisruptionTarget"



def _disruption_condition(pod: Any) -> Any:
    conditions = (pod.status.conditions or []) if pod is not None and pod.status else []
    return next((c for c in conditions if c.type == DISRUPTION_CONDITION and c.status == "True"), None)



def disruption_diagnosis(pod: Any, job_failure: Any, seen: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """Why a step's Job failed, if a disruption did it (else None): the pod's DisruptionTarget
    condition while the pod is still there; once it is gone, the Job's PodFailurePolicy
    condition, with what the health checks saw of the pod before.

    `pod`: a kubernetes V1Pod or None; `job_failure`: the Job's Failed V1JobCondition or None;
    `seen`: {pod, node[, reason, message]} from the last health check.
    """
    seen = dict(seen or {})
    condition = _disruption_condition(pod)
    if condition is not None:
        return {"reason": condition.reason or DISRUPTION_CONDITION, "message": condition.message or "",
                "pod": pod.metadata.name, "node": (pod.spec.node_name if pod.spec else None) or seen.get("node", "unknown")}
    message = getattr(job_failure, "message", None) or ""
    if getattr(job_failure, "reason", None) == "PodFailurePolicy" and f"condition {DISRUPTION_CONDITION}" in message:
        named = re.match(r"Pod [^/\s]+/(\S+) has condition", message)
        return {"reason": seen.get("reason", DISRUPTION_CONDITION), "message": seen.get("message") or message,
                "pod": named.group(1) if named else seen.get("pod", "unknown"), "node": seen.get("node", "unknown")}
    return None



def grown_memory(resources: Mapping[str, Any], growth: float, cap: str | None, attempt: int) -> dict[str, Any]:
    """Requests and limits with memory x growth**attempt, at most `cap` (Mi, rounded up)."""
    from ktx_dagster.task_resources import parse_quantity

    requests = dict(resources.get("requests") or {})
    limits = dict(resources.get("limits") or {})
    was = limits.get("memory") or requests.get("memory")
    top = int(parse_quantity(cap, field_name="max_memory")) if cap else None
    out: dict[str, Any] = {"resources": {}, "was": was}
    for name, values in (("requests", requests), ("limits", limits)):
        if "memory" in values:
            wanted = int(parse_quantity(values["memory"], field_name="memory")) * growth**attempt
            wanted = min(wanted, top) if top else wanted
            values = {**values, "memory": f"{int(-(-wanted // 2**20))}Mi"}
            out["resources"][name] = values
    out["memory"] = (out["resources"].get("limits") or out["resources"].get("requests") or {}).get("memory")
    return out



def oom_diagnosis(pod: Any) -> dict[str, Any] | None:
    """What an OOMKilled step pod says, for people and for failure sensors; None otherwise.

    `pod`: a kubernetes V1Pod. The message names the transformation and partition, the
    memory it asked for and was limited to, and how to give it more.
    """
    statuses = (pod.status.container_statuses or []) if pod.status else []
    for status in statuses:
        for state in (status.state, status.last_state):
            terminated = state.terminated if state is not None else None
            if terminated is None or terminated.reason != "OOMKilled":
                continue
            container = next((c for c in pod.spec.containers if c.name == status.name), pod.spec.containers[0])
            resources = container.resources
            limit = ((resources.limits or {}) if resources else {}).get("memory")
            request = ((resources.requests or {}) if resources else {}).get("memory")
            labels = pod.metadata.labels or {}
            transformation = labels.get(TRANSFORMATION_LABEL, "this transformation")
            partition = (pod.metadata.annotations or {}).get(PARTITION_KEY_ANNOTATION)
            where = f"{transformation}[{partition}]" if partition is not None else transformation
            message = f"{where} ran out of memory: its container was OOMKilled (exit {terminated.exit_code})"
            if limit:
                message += (f" at its memory limit of {limit} (request {request or limit}). Give the transformation "
                            f"more with @transformation(memory={_doubled(limit)!r})")
            message += ", or split its work into more, smaller partitions."
            return {"message": message, "failure_reason": "OOMKilled", "exit_code": int(terminated.exit_code or 137),
                    "memory_limit": limit or "", "memory_request": request or "", "pod": pod.metadata.name}
    return None



def _doubled(quantity: str) -> str:
    from ktx_dagster.task_resources import parse_quantity

    mib = int(parse_quantity(quantity, field_name="memory")) * 2 / 2**20
    return f"{mib / 1024:g}Gi" if mib >= 1024 and mib % 1024 == 0 else f"{int(-(-mib // 1))}Mi"

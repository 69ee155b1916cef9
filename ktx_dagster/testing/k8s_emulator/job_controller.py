"""The Job controller: Pods from a Job's template, its status and conditions, backoff, deadlines,
TTL, Indexed completions and the pod failure policy."""

from __future__ import annotations

import copy
import queue
import sys
import time
from collections.abc import Mapping
from typing import Any

from ktx_dagster.testing.k8s_emulator.objects import ApiError, _now, _parse_ts


class JobController:
    """KubeEmulator's Job controller (its state lives on KubeEmulator)."""

    def _controller_loop(self) -> None:
        last_sweep = 0.0
        while not self._stopping.is_set():
            try:
                item = self._work.get(timeout=0.25)
            except queue.Empty:
                item = ()
            if item is None:
                return
            try:
                if item and item[0] == "job":
                    self._reconcile_job(item[1], item[2])
                elif item and item[0] == "config":
                    pass  # waiting pods poll for their config themselves
                if time.monotonic() - last_sweep > 0.5:
                    last_sweep = time.monotonic()
                    with self._lock:
                        keys = [(ns, n) for (p, ns, n) in self._objects if p == "jobs"]
                    for ns, n in keys:
                        self._reconcile_job(ns, n)
            except Exception as exc:  # keep the controller alive; surface in stderr
                print(f"[kube-emulator] controller error: {exc!r}", file=sys.stderr)

    def _reconcile_job(self, namespace: str, name: str) -> None:
        with self._lock:
            job = self._objects.get(("jobs", namespace, name))
            if job is None:
                return
            job = copy.deepcopy(job)
            status = job.get("status") or {}
            spec = job["spec"]
            now = time.time()
            finished_types = {c["type"] for c in status.get("conditions") or [] if c.get("status") == "True"}
            if finished_types & {"Complete", "Failed"}:
                ttl = spec.get("ttlSecondsAfterFinished")
                done_at = status.get("completionTime") or (status.get("conditions") or [{}])[-1].get("lastTransitionTime")
                if ttl is not None and done_at and now - _parse_ts(done_at) >= ttl:
                    self.delete("jobs", namespace, name, "Background")
                return
            if spec.get("suspend"):
                return
            pods = self._owned_pods(job)
            active = [p for p in pods if p["status"].get("phase") in ("Pending", "Running")]
            ready = [p for p in active if p["status"].get("phase") == "Running"]
            succeeded = [p for p in pods if p["status"].get("phase") == "Succeeded"]
            failed = [p for p in pods if p["status"].get("phase") == "Failed"]
            # Pods that were deleted after failing still count (the real controller uses finalizers).
            gone = self._gone_pods.get(job["metadata"]["uid"], {})
            fail_job, ignored = None, 0
            for p in failed:
                matched = pod_failure_policy_match(spec.get("podFailurePolicy"), p)
                if matched is not None and matched[0] == "FailJob" and fail_job is None:
                    fail_job = matched[1]
                elif matched is not None and matched[0] == "Ignore":
                    ignored += 1
                    self._ignored_pods.add(p["metadata"]["uid"])
            n_failed = len(failed) - ignored + gone.get("Failed", 0)
            n_succeeded_prev = gone.get("Succeeded", 0)
            completions = spec.get("completions") or 1
            parallelism = spec.get("parallelism", 1)
            indexed = spec.get("completionMode") == "Indexed"
            start_time = status.get("startTime") or _now()
            conditions = list(status.get("conditions") or [])
            new_status: dict[str, Any] = {
                "startTime": start_time,
                "active": len(active) or None,
                "ready": len(ready),
                "terminating": 0,
                "succeeded": (len(succeeded) + n_succeeded_prev) or None,
                "failed": n_failed or None,
                "uncountedTerminatedPods": {},
            }
            if indexed:
                done_idx = sorted({_pod_index(p) for p in succeeded} - {None})
                new_status["completedIndexes"] = _format_indexes(done_idx) or None
            else:
                done_idx = []

            def finish(ctype: str, reason: str, message: str) -> None:
                ts = _now()
                if ctype == "Complete":
                    conditions.append({"type": "SuccessCriteriaMet", "status": "True", "reason": reason, "message": message, "lastProbeTime": ts, "lastTransitionTime": ts})
                    new_status["completionTime"] = ts
                else:
                    conditions.append({"type": "FailureTarget", "status": "True", "reason": reason, "message": message, "lastProbeTime": ts, "lastTransitionTime": ts})
                conditions.append({"type": ctype, "status": "True", "reason": reason, "message": message, "lastProbeTime": ts, "lastTransitionTime": ts})
                for p in active:
                    self.delete("pods", namespace, p["metadata"]["name"])
                new_status["active"] = None
                new_status["ready"] = 0
                self._event(namespace, job, reason, message, "Normal" if ctype == "Complete" else "Warning")

            deadline = spec.get("activeDeadlineSeconds")
            to_create: list[int | None] = []
            if fail_job is not None:
                finish("Failed", "PodFailurePolicy", fail_job)
            elif n_failed > spec.get("backoffLimit", 6):
                finish("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
            elif deadline is not None and now - _parse_ts(start_time) > deadline:
                finish("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
            elif (indexed and len(done_idx) >= completions) or (not indexed and len(succeeded) + n_succeeded_prev >= completions):
                finish("Complete", "CompletionsReached", "Reached expected number of succeeded pods")
            else:
                slots = max(0, parallelism - len(active))
                if indexed:
                    busy = {_pod_index(p) for p in active} | set(done_idx)
                    to_create = [i for i in range(completions) if i not in busy][:slots]
                else:
                    remaining = completions - len(succeeded) - n_succeeded_prev - len(active)
                    to_create = [None] * max(0, min(slots, remaining))
            new_status["conditions"] = conditions or None
            new_status = {k: v for k, v in new_status.items() if v is not None}
            if new_status != status:
                self._update_status("jobs", namespace, name, lambda o: o.__setitem__("status", new_status))
        for index in to_create:
            self._create_job_pod(job, index)

    def _create_job_pod(self, job: Mapping[str, Any], index: int | None) -> None:
        template = copy.deepcopy(job["spec"]["template"])
        meta = template.get("metadata") or {}
        name = job["metadata"]["name"]
        base = f"{name}-{index}-" if index is not None else f"{name}-"
        labels = dict(meta.get("labels") or {})
        annotations = dict(meta.get("annotations") or {})
        spec = template.get("spec") or {}
        if index is not None:
            labels["batch.kubernetes.io/job-completion-index"] = str(index)
            annotations["batch.kubernetes.io/job-completion-index"] = str(index)
            for c in spec.get("containers") or []:
                c.setdefault("env", []).append({"name": "JOB_COMPLETION_INDEX", "value": str(index)})
        pod = {
            "metadata": {
                "generateName": base,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": name,
                        "uid": job["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": spec,
        }
        try:
            created = self.create("pods", job["metadata"]["namespace"], pod)
        except ApiError as exc:
            self._event(job["metadata"]["namespace"], job, "FailedCreate", exc.message, "Warning")
            return
        self._event(job["metadata"]["namespace"], job, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")


def pod_failure_policy_match(policy: Mapping[str, Any] | None, pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """(action, message) of the first rule of a Job's ``podFailurePolicy`` a failed pod
    matches, worded as the real Job controller words its condition; None if none does."""
    meta = pod["metadata"]
    where = f"{meta.get('namespace')}/{meta['name']}"
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    conditions = (pod.get("status") or {}).get("conditions") or []
    for index, rule in enumerate((policy or {}).get("rules") or []):
        action = rule.get("action", "Count")
        on_codes = rule.get("onExitCodes")
        if on_codes:
            for cs in statuses:
                if on_codes.get("containerName") not in (None, cs["name"]):
                    continue
                code = ((cs.get("state") or {}).get("terminated") or {}).get("exitCode")
                if code in (None, 0):
                    continue
                inside = code in (on_codes.get("values") or [])
                if inside == (on_codes.get("operator", "In") == "In"):
                    return action, (f"Container {cs['name']} for pod {where} failed with exit code {code} "
                                    f"matching {action} rule at index {index}")
        for wanted in rule.get("onPodConditions") or []:
            status = wanted.get("status", "True")
            if any(c.get("type") == wanted.get("type") and c.get("status") == status for c in conditions):
                return action, f"Pod {where} has condition {wanted['type']} matching {action} rule at index {index}"
    return None


def _pod_index(pod: Mapping[str, Any]) -> int | None:
    v = (pod["metadata"].get("annotations") or {}).get("batch.kubernetes.io/job-completion-index")
    return int(v) if v is not None else None


def _format_indexes(idx: list[int]) -> str:
    out, start, prev = [], None, None
    for i in idx:
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            out.append(f"{start}-{prev}" if start != prev else str(start))
            start = prev = i
    if start is not None:
        out.append(f"{start}-{prev}" if start != prev else str(start))
    return ",".join(out)

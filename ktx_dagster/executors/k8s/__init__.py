"""Run every step (one partition of one transformation) as its own Kubernetes Job.

Built on dagster-k8s's ``K8sStepHandler`` (subclassed, not forked). What we add:

* Works under the **default run launcher** (``dagster dev`` on a laptop pointing at
  Minikube). Upstream 0.29.x calls ``K8sContainerContext.create_for_run(run,
  instance.run_launcher)`` and ``get_k8s_job_config(image, instance.run_launcher)``
  unconditionally, which raises ``AttributeError: 'DefaultRunLauncher' object has no
  attribute 'image_pull_policy'``. We hand upstream the run launcher only when it *is*
  a ``K8sRunLauncher`` and otherwise fill the job config from :class:`K8sSettings`.
* Per-step pod spec from the step's op tags: cpu/memory/ephemeral-storage/GPU requests
  and limits, node selector and tolerations come in the standard ``dagster-k8s/config``
  tag (merged by upstream); we add labels ``ktx/transformation`` and ``ktx/partition``
  (sanitised, see :func:`sanitize_label_value`), the raw partition key as an
  annotation, a GPU toleration when a GPU is requested, a non-root security context and
  the data directory (Minikube: hostPath ``/mnt/data``; EKS: ``s3://...`` via the pod's
  IAM role, never keys).
* The Dagster instance: ``DAGSTER_HOME`` with ``dagster.yaml`` from a ConfigMap, the
  Postgres password from a Secret (``DAGSTER_PG_PASSWORD``) and extra env from
  ConfigMaps/Secrets, so step pods report to the same (PostgreSQL) instance.
* A health check whose failure message carries the failed pod's status and log tail.
* Disruption is not failure: a step pod evicted, preempted or on a drained node (pod
  condition ``DisruptionTarget``) is started again as a new Job (``-r1``, ``-r2`` ...) without
  using a Dagster retry, and never by the Job itself (``backoffLimit`` 0; a
  ``podFailurePolicy`` fails the Job on ``DisruptionTarget``, so its condition says why even
  once the pod is gone; see dagster-io/dagster#33755). The step pod's entry point
  (:mod:`ktx_dagster.executors.step_worker`) keeps a disruption's SIGTERM from failing the step.
* Stragglers: a step running past its transformation's ``expected_duration`` is told once
  in the run's log, with its pod and node.

All settings come from the environment in one place, :meth:`K8sSettings.from_env`.
``k8s_executor(deployment)`` is what ``ktx_dagster.deployment`` calls for
``KTX_DEPLOYMENT=minikube|eks``.

One job per module: ``settings``, ``labels``, ``container_context``, ``cluster_access``,
``diagnosis``, ``pod_watch``, ``step_handler``, ``executor``, ``manifests``.
"""

from __future__ import annotations

from ktx_dagster.executors.k8s.cluster_access import (
    ClusterAccessError,
    check_cluster_access,
    kubeconfig_source,
)
from ktx_dagster.executors.k8s.container_context import GPU_RESOURCE, step_container_context, step_pod_context
from ktx_dagster.executors.k8s.diagnosis import (
    DISRUPTION_CONDITION,
    disruption_diagnosis,
    grown_memory,
    oom_diagnosis,
)
from ktx_dagster.executors.k8s.executor import k8s_executor, ktx_k8s_job_executor
from ktx_dagster.executors.k8s.labels import (
    PARTITION_KEY_ANNOTATION,
    PARTITION_LABEL,
    TRANSFORMATION_LABEL,
    sanitize_label_value,
    step_labels,
)
from ktx_dagster.executors.k8s.manifests import render_step_job
from ktx_dagster.executors.k8s.settings import DATA_MOUNT, DEPLOYMENTS, K8sSettings
from ktx_dagster.executors.k8s.pod_watch import MAX_DISRUPTION_RELAUNCHES, PARTITION_RUN_TAG, TRANSFORMATION_TAG
from ktx_dagster.executors.k8s.step_handler import KtxK8sStepHandler

__all__ = [
    "ClusterAccessError",
    "DATA_MOUNT",
    "DEPLOYMENTS",
    "DISRUPTION_CONDITION",
    "GPU_RESOURCE",
    "K8sSettings",
    "KtxK8sStepHandler",
    "MAX_DISRUPTION_RELAUNCHES",
    "PARTITION_KEY_ANNOTATION",
    "PARTITION_LABEL",
    "PARTITION_RUN_TAG",
    "TRANSFORMATION_LABEL",
    "TRANSFORMATION_TAG",
    "check_cluster_access",
    "disruption_diagnosis",
    "grown_memory",
    "k8s_executor",
    "ktx_k8s_job_executor",
    "kubeconfig_source",
    "oom_diagnosis",
    "render_step_job",
    "sanitize_label_value",
    "step_container_context",
    "step_labels",
    "step_pod_context",
]

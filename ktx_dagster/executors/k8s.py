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
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from dagster import DagsterEvent, Executor, Field, InitExecutorContext, IntSource, executor, multiprocess_executor
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import DagsterK8sJobConfig, UserDefinedDagsterK8sConfig
from dagster_k8s.launcher import K8sRunLauncher

from ktx_dagster.compat import (
    K8S_EXECUTOR_CONFIG_SCHEMA,
    step_handler_context_for_relaunch,
    CheckStepHealthResult,
    EngineEventData,
    K8sStepHandler,
    RetryMode,
    StepDelegatingExecutor,
    StepDependencyConfig,
    StepHandlerContext,
    merge_dicts,
)
from ktx_dagster.executors import step_worker
from ktx_dagster.executors.stragglers import straggler_message
from ktx_dagster.task_resources import (
    EXPECTED_DURATION_TAG,
    MAX_MEMORY_TAG,
    MEMORY_GROWTH_TAG,
    STRAGGLERS_TOLD_BY_ENV,
)

__all__ = [
    "K8sSettings",
    "KtxK8sStepHandler",
    "k8s_executor",
    "ktx_k8s_job_executor",
    "sanitize_label_value",
    "step_labels",
]

TRANSFORMATION_LABEL = "ktx/transformation"
PARTITION_LABEL = "ktx/partition"
PARTITION_KEY_ANNOTATION = "ktx/partition-key"
TRANSFORMATION_TAG = "ktx/transformation"
PARTITION_RUN_TAG = "dagster/partition"
DEPLOYMENTS = ("minikube", "eks")
DATA_MOUNT = "/mnt/data"
GPU_RESOURCE = "nvidia.com/gpu"
DISRUPTION_CONDITION = "DisruptionTarget"
MAX_DISRUPTION_RELAUNCHES = 3

_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_HASH_LEN = 10


# --------------------------------------------------------------------------- labels


def sanitize_label_value(value: str) -> str:
    """Turn any string into a valid Kubernetes label value, stably.

    A value that is already valid (<= 63 chars, ``[-_.A-Za-z0-9]``, alphanumeric at both
    ends, or empty) is returned unchanged, so ``kubectl -l ktx/partition=0-999`` works.
    Anything else (``a/b|c``, multi-partition ``2024-01-01|us``, 200-char keys, unicode)
    becomes its cleaned, truncated form plus ``-`` and a 10-hex-char SHA-256 of the
    *original* value, so two different keys never share a label by accident and the
    same key always gets the same label.
    """
    value = "" if value is None else str(value)
    if len(value) <= 63 and _LABEL_VALUE_RE.match(value):
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:_HASH_LEN]
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", value)
    cleaned = re.sub(r"^[^A-Za-z0-9]+", "", cleaned)
    cleaned = cleaned[: 63 - _HASH_LEN - 1]
    cleaned = re.sub(r"[^A-Za-z0-9]+$", "", cleaned)
    return f"{cleaned}-{digest}" if cleaned else digest


def step_labels(transformation: str | None, partition: str | None) -> dict[str, str]:
    """The ``ktx/*`` labels of a step's Job and Pod (only those that are known)."""
    labels = {}
    if transformation:
        labels[TRANSFORMATION_LABEL] = sanitize_label_value(transformation)
    if partition is not None:
        labels[PARTITION_LABEL] = sanitize_label_value(partition)
    return labels


# --------------------------------------------------------------------------- settings


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def _opt_int(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"\d+", raw):
        raise ValueError(f"{name}={raw!r} must be a whole number >= 0")
    return int(raw)


@dataclass(frozen=True)
class K8sSettings:
    """Everything the executor reads from the environment (see README "Kubernetes")."""

    deployment: str = "minikube"
    namespace: str = "ktx"
    image: str | None = "ktx-dagster:dev"
    image_pull_policy: str = "IfNotPresent"
    service_account: str | None = "ktx-step"
    # Dagster instance for step pods: dagster.yaml from this ConfigMap, mounted at DAGSTER_HOME.
    instance_configmap: str | None = None
    pod_dagster_home: str = "/opt/dagster/dagster_home"
    pg_password_secret: str | None = None  # Secret with key `postgresql-password`
    env_configmaps: tuple[str, ...] = ()
    env_secrets: tuple[str, ...] = ()
    env_vars: tuple[str, ...] = ()  # "NAME" (copied from here) or "NAME=value"
    # Data: what step pods see as KTX_DATA_DIR; on Minikube also the node's hostPath.
    data_dir: str = DATA_MOUNT
    host_data_path: str | None = DATA_MOUNT
    # API access from the process that launches the steps (laptop or run pod).
    kubeconfig: str | None = None
    kube_context: str | None = None
    in_cluster: bool = False
    # Job behaviour.
    job_ttl_seconds: int = 3600  # finished Jobs kept one hour, like kube-transform
    backoff_limit: int = 0  # retries are Dagster's (retry policies), not the Job's
    active_deadline_seconds: int | None = None
    max_concurrent: int | None = None
    health_check_seconds: int = 20
    # The step pods' uid/gid. On Minikube with the Docker driver the data mount belongs to
    # the laptop user (fsGroup does not apply to hostPath): run the steps as its owner.
    run_as_user: int = 10001
    run_as_group: int | None = None  # default: run_as_user

    @classmethod
    def from_env(cls, deployment: str | None = None, env: Mapping[str, str] | None = None) -> K8sSettings:
        env = os.environ if env is None else env
        dep = (deployment or env.get("KTX_DEPLOYMENT") or "minikube").strip().lower()
        if dep not in DEPLOYMENTS:
            raise ValueError(f"KTX_DEPLOYMENT={dep!r}: the k8s executor supports {', '.join(DEPLOYMENTS)}")

        def get(name: str, default: str | None) -> str | None:
            raw = env.get(name)
            return raw.strip() if raw is not None and raw.strip() != "" else default

        if dep == "minikube":
            defaults: dict[str, Any] = {
                "namespace": "ktx",
                "image": "ktx-dagster:dev",
                "pull": "IfNotPresent",
                "sa": "ktx-step",
                "instance_cm": "ktx-dagster-instance",
                "pg_secret": "ktx-postgres",
                "env_cms": "ktx-instance-env",
                "data_dir": DATA_MOUNT,
                "host_data_path": DATA_MOUNT,
            }
        else:
            defaults = {
                "namespace": "dagster",
                "image": None,
                "pull": "IfNotPresent",
                "sa": "ktx-step",
                "instance_cm": None,
                "pg_secret": None,
                "env_cms": "",
                "data_dir": None,
                "host_data_path": None,
            }
        # On Minikube pods always see the mounted /mnt/data (the laptop's KTX_DATA_DIR is
        # its local ./data); on EKS the data dir *is* KTX_DATA_DIR (s3://bucket/prefix).
        if dep == "minikube":
            data_dir = get("KTX_POD_DATA_DIR", defaults["data_dir"])
        else:
            data_dir = get("KTX_POD_DATA_DIR", get("KTX_DATA_DIR", None))
            if not data_dir or not data_dir.startswith("s3://"):
                raise ValueError(
                    "KTX_DEPLOYMENT=eks needs KTX_DATA_DIR (or KTX_POD_DATA_DIR) = s3://bucket/prefix;"
                    f" got {data_dir!r}"
                )
        host_data_path = get("KTX_HOST_DATA_PATH", defaults["host_data_path"])
        if host_data_path and host_data_path.lower() in ("none", "off", "-"):
            host_data_path = None
        kubeconfig = get("KTX_KUBECONFIG", get("KUBECONFIG", None))
        if kubeconfig and os.pathsep in kubeconfig:
            kubeconfig = kubeconfig.split(os.pathsep)[0]
        in_cluster_raw = get("KTX_K8S_IN_CLUSTER", None)
        if in_cluster_raw is not None:
            in_cluster = in_cluster_raw.lower() in ("1", "true", "yes")
        else:
            in_cluster = bool(env.get("KUBERNETES_SERVICE_HOST")) and not kubeconfig
        pull = get("KTX_IMAGE_PULL_POLICY", defaults["pull"])
        if pull not in ("Always", "IfNotPresent", "Never"):
            raise ValueError(f"KTX_IMAGE_PULL_POLICY={pull!r} must be Always, IfNotPresent or Never")
        return cls(
            deployment=dep,
            namespace=cast(str, get("KTX_K8S_NAMESPACE", defaults["namespace"])),
            image=get("KTX_IMAGE", defaults["image"]),
            image_pull_policy=cast(str, pull),
            service_account=get("KTX_SERVICE_ACCOUNT", defaults["sa"]),
            instance_configmap=get("KTX_INSTANCE_CONFIGMAP", defaults["instance_cm"]),
            pod_dagster_home=cast(str, get("KTX_POD_DAGSTER_HOME", "/opt/dagster/dagster_home")),
            pg_password_secret=get("KTX_PG_PASSWORD_SECRET", defaults["pg_secret"]),
            env_configmaps=_csv(get("KTX_ENV_CONFIGMAPS", defaults["env_cms"])),
            env_secrets=_csv(get("KTX_ENV_SECRETS", "")),
            env_vars=_csv(get("KTX_POD_ENV", "")),
            data_dir=cast(str, data_dir),
            host_data_path=host_data_path if dep == "minikube" else None,
            kubeconfig=kubeconfig,
            kube_context=get("KTX_KUBE_CONTEXT", None),
            in_cluster=in_cluster,
            job_ttl_seconds=cast(int, _opt_int(env, "KTX_JOB_TTL_SECONDS", 3600)),
            backoff_limit=cast(int, _opt_int(env, "KTX_JOB_BACKOFF_LIMIT", 0)),
            active_deadline_seconds=_opt_int(env, "KTX_JOB_ACTIVE_DEADLINE_SECONDS", None),
            max_concurrent=_opt_int(env, "KTX_K8S_MAX_CONCURRENT", None),
            health_check_seconds=cast(int, _opt_int(env, "KTX_STEP_HEALTH_CHECK_SECONDS", 20)),
            run_as_user=cast(int, _opt_int(env, "KTX_RUN_AS_USER", 10001)),
            run_as_group=_opt_int(env, "KTX_RUN_AS_GROUP", None),
        )

    # -- what the settings mean for a step pod -------------------------------------

    @property
    def group(self) -> int:
        return self.run_as_user if self.run_as_group is None else self.run_as_group

    def base_container_context(self) -> K8sContainerContext:
        """Namespace, service account, env, volumes, security context and Job spec."""
        # HOME on the writable /tmp: the root filesystem is read-only, and libraries write
        # caches and settings under ~ (Dagster's telemetry id, matplotlib's font cache).
        env = [{"name": "KTX_DATA_DIR", "value": self.data_dir}, {"name": "HOME", "value": "/tmp"}]
        env_vars = list(self.env_vars)
        volumes: list[dict[str, Any]] = []
        mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
        volumes.append({"name": "tmp", "emptyDir": {}})
        if self.host_data_path and not self.data_dir.startswith("s3://"):
            volumes.append({"name": "ktx-data", "hostPath": {"path": self.host_data_path, "type": "Directory"}})
            mounts.append({"name": "ktx-data", "mountPath": self.data_dir})
        if self.instance_configmap:
            volumes.append({"name": "dagster-home", "emptyDir": {}})
            volumes.append({"name": "dagster-instance", "configMap": {"name": self.instance_configmap}})
            mounts.append({"name": "dagster-home", "mountPath": self.pod_dagster_home})
            mounts.append(
                {
                    "name": "dagster-instance",
                    "mountPath": f"{self.pod_dagster_home.rstrip('/')}/dagster.yaml",
                    "subPath": "dagster.yaml",
                    "readOnly": True,
                }
            )
        run_k8s_config = UserDefinedDagsterK8sConfig.from_dict(
            {
                "container_config": {
                    "security_context": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "runAsNonRoot": True,
                        "runAsUser": self.run_as_user,
                        "capabilities": {"drop": ["ALL"]},
                    },
                },
                "pod_spec_config": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": self.run_as_user,
                        "runAsGroup": self.group,
                        "fsGroup": self.group,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                },
                "job_spec_config": {
                    "ttlSecondsAfterFinished": self.job_ttl_seconds,
                    "backoffLimit": self.backoff_limit,
                    **(
                        {"activeDeadlineSeconds": self.active_deadline_seconds}
                        if self.active_deadline_seconds
                        else {}
                    ),
                },
            }
        )
        return K8sContainerContext(
            image_pull_policy=self.image_pull_policy,
            service_account_name=self.service_account,
            env_config_maps=list(self.env_configmaps),
            env_secrets=list(self.env_secrets),
            env_vars=env_vars,
            env=env,
            volumes=volumes,
            volume_mounts=mounts,
            namespace=self.namespace,
            run_k8s_config=run_k8s_config,
        )

    def job_config(self, job_image: str | None) -> DagsterK8sJobConfig:
        """The job config upstream would take from a K8sRunLauncher."""
        return DagsterK8sJobConfig(
            job_image=job_image or self.image,
            dagster_home=self.pod_dagster_home if self.instance_configmap else None,
            image_pull_policy=self.image_pull_policy,
            instance_config_map=self.instance_configmap,
            postgres_password_secret=self.pg_password_secret,
        )


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


# --------------------------------------------------------------------------- cluster access


class ClusterAccessError(RuntimeError):
    """The Kubernetes API cannot be reached from where the steps are launched."""


_ACCESS_FIX = ("Fix: point KUBECONFIG (or KTX_KUBECONFIG) at the kubeconfig of a cluster that is up "
               "(`minikube start` and `aws eks update-kubeconfig` write ~/.kube/config), choose its context "
               "with KTX_KUBE_CONTEXT, or run locally with KTX_DEPLOYMENT=local.")


def kubeconfig_source(env: Mapping[str, str] | None = None) -> str:
    """Which setting named the kubeconfig, for error messages."""
    env = os.environ if env is None else env
    for name in ("KTX_KUBECONFIG", "KUBECONFIG"):
        if env.get(name, "").strip():
            return name
    return "KUBECONFIG (not set: the default)"


def check_cluster_access(kubeconfig: str | None, context: str | None, source: str, timeout: float = 5.0) -> None:
    """Before any Job is created: the kubeconfig exists and loads, its context exists, and its
    API server answers. Raises ClusterAccessError naming the file (or server), the setting and
    the fix."""
    import kubernetes
    import urllib3

    path = os.path.expanduser(kubeconfig or kubernetes.config.KUBE_CONFIG_DEFAULT_LOCATION)
    if not os.path.isfile(path):
        raise ClusterAccessError(
            f"{source}={path}: no such kubeconfig file, so the Kubernetes executor cannot reach a cluster and "
            f"created no Job. {_ACCESS_FIX}")
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_kube_config(path, context=context, client_configuration=configuration)
    except (kubernetes.config.ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        what = f"KTX_KUBE_CONTEXT={context}: " if context else ""
        raise ClusterAccessError(
            f"{what}the kubeconfig {path} ({source}) cannot be used: {exc}. No Job was created. {_ACCESS_FIX}"
        ) from exc
    configuration.retries = 1
    try:
        with kubernetes.client.ApiClient(configuration) as api:
            kubernetes.client.VersionApi(api).get_code(_request_timeout=timeout, _preload_content=False)
    except kubernetes.client.ApiException:
        return  # it answered (401/403 are the credentials' business, told by the first real call)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        used = f", context {context} (KTX_KUBE_CONTEXT)" if context else ""
        raise ClusterAccessError(
            f"the Kubernetes API server {configuration.host} does not answer ({reason}); it comes from the kubeconfig "
            f"{path} ({source}{used}). No Job was created. {_ACCESS_FIX}") from exc


# --------------------------------------------------------------------------- step handler


class KtxK8sStepHandler(K8sStepHandler):
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

        # Upstream passes the instance's run launcher unconditionally (AttributeError on
        # DefaultRunLauncher). Our settings are the base; a K8sRunLauncher's config and the
        # code location's container context override them, the executor's run config and
        # the step's op tags override those.
        context = self._settings.base_container_context().merge(step_pod_context())
        context = context.merge(
            K8sContainerContext.create_for_run(run, k8s_launcher, include_run_tags=False)
        )
        context = context.merge(self._executor_container_context)

        step_tags = step_handler_context.step_tags[step_key]
        from dagster_k8s.job import get_user_defined_k8s_config

        context = context.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(step_tags)))
        op_name = step_handler_context.get_step_context(step_key).step.op_name
        context = context.merge(
            K8sContainerContext(
                run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
                    self._per_step_k8s_config.get(op_name, {})
                )
            )
        )

        transformation = step_tags.get(TRANSFORMATION_TAG) or op_name
        partition = run.tags.get(PARTITION_RUN_TAG)
        labels = step_labels(transformation, partition)
        extra: dict[str, Any] = {
            "job_metadata": {"labels": labels},
            "pod_template_spec_metadata": {"labels": labels},
        }
        if partition is not None:
            annotations = {PARTITION_KEY_ANNOTATION: partition}
            extra["job_metadata"]["annotations"] = annotations
            extra["pod_template_spec_metadata"]["annotations"] = annotations
        context = context.merge(K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(extra)))
        context = self._grow_memory_after_oom(step_handler_context, step_key, step_tags, context)
        context = _add_gpu_toleration(context)
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


# --------------------------------------------------------------------------- executor

_KTX_EXECUTOR_CONFIG_SCHEMA = merge_dicts(
    K8S_EXECUTOR_CONFIG_SCHEMA,
    {
        "check_step_health_interval_seconds": Field(
            IntSource,
            is_required=False,
            description="Seconds between Job health checks (default KTX_STEP_HEALTH_CHECK_SECONDS or 20).",
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


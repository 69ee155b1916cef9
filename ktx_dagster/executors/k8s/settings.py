"""K8sSettings: everything the executor reads from the environment, and what it means for a step pod."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import DagsterK8sJobConfig, UserDefinedDagsterK8sConfig


DEPLOYMENTS = ("minikube", "eks")



DATA_MOUNT = "/mnt/data"



def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())



def _opt_int(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"\d+", raw):
        raise ValueError(f"{name}={raw!r} must be a whole number >= 0")
    return int(raw)



def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"{name}={raw!r} must be a number of seconds above 0, e.g. 0.25")
    return value



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
    # How often the run worker looks for its steps' events (Dagster's StepDelegatingExecutor
    # sleeps 1 s, so a finished step is noticed 0.5 s late on average: a quarter of a Hello
    # World partition on the cluster). Each look is one event-log query per running run.
    step_poll_seconds: float = 0.25
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
                "pg_secret": "ktx-postgres",  # pragma: allowlist secret (a Secret's name)
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
            step_poll_seconds=_positive_float(
                env, "KTX_STEP_POLL_SECONDS",
                _positive_float(env, "DAGSTER_STEP_DELEGATING_EXECUTOR_SLEEP_SECONDS", 0.25),
            ),
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

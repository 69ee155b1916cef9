"""Pure parts of executors/k8s/: label sanitizer, settings from env, rendered Job spec.
No cluster, no emulator: these run in every `pytest` invocation."""

from __future__ import annotations

import datetime
import hashlib

import pytest

from ktx_dagster.executors.k8s import (
    K8sSettings,
    k8s_executor,
    render_step_job,
    sanitize_label_value,
    step_labels,
)
from ktx_dagster.testing.k8s_rules import is_valid_label_value, object_rule_errors

ODD_KEYS = [
    "0-999",
    "a/b|c",
    "2024-01-01|us-east",  # a multi-partition key
    "k" * 200,
    "-leading-and-trailing-",
    "_x_",
    "spaces in key",
    "ünïcödé",
    "a" * 63,
    "a" * 64,
    "",
    "mpd.slice.0-999.json",
    "....",
    "a-_b",
]


@pytest.mark.parametrize("key", ODD_KEYS)
def test_sanitized_label_is_valid_and_stable(key):
    value = sanitize_label_value(key)
    assert is_valid_label_value(value), value
    assert len(value) <= 63
    assert sanitize_label_value(key) == value


@pytest.mark.parametrize("key", ["0-999", "part_00001.txt", "a" * 63, "", "A.b-C_d"])
def test_valid_values_are_kept_verbatim(key):
    assert sanitize_label_value(key) == key


def test_changed_values_carry_a_hash_of_the_original():
    digest = hashlib.sha256(b"a/b|c").hexdigest()[:10]
    assert sanitize_label_value("a/b|c") == f"a-b-c-{digest}"
    long = sanitize_label_value("k" * 200)
    assert long.startswith("k" * 52) and long.endswith(hashlib.sha256(("k" * 200).encode()).hexdigest()[:10])
    # different keys that clean to the same text still get different labels
    assert sanitize_label_value("a/b") != sanitize_label_value("a|b")
    assert sanitize_label_value("é") == hashlib.sha256("é".encode()).hexdigest()[:10]


def test_step_labels():
    assert step_labels("hello_world", "part_1.txt") == {
        "ktx/transformation": "hello_world",
        "ktx/partition": "part_1.txt",
    }
    assert step_labels("t", None) == {"ktx/transformation": "t"}


def test_settings_minikube_defaults():
    s = K8sSettings.from_env("minikube", env={})
    assert (s.namespace, s.image, s.image_pull_policy, s.service_account) == (
        "ktx", "ktx-dagster:dev", "IfNotPresent", "ktx-step")
    assert s.data_dir == "/mnt/data" and s.host_data_path == "/mnt/data"
    assert s.instance_configmap == "ktx-dagster-instance" and s.pg_password_secret == "ktx-postgres"
    assert not s.in_cluster


def test_settings_from_env_overrides():
    env = {
        "KTX_K8S_NAMESPACE": "ns",
        "KTX_IMAGE": "img:1",
        "KTX_IMAGE_PULL_POLICY": "Never",
        "KTX_SERVICE_ACCOUNT": "sa",
        "KTX_INSTANCE_CONFIGMAP": "cm",
        "KTX_ENV_CONFIGMAPS": "a, b",
        "KTX_ENV_SECRETS": "s",
        "KTX_POD_ENV": "X=1,Y",
        "KUBECONFIG": "/k/config:/other",
        "KTX_JOB_TTL_SECONDS": "60",
        "KTX_JOB_BACKOFF_LIMIT": "2",
        "KTX_K8S_MAX_CONCURRENT": "4",
    }
    s = K8sSettings.from_env("minikube", env=env)
    assert (s.namespace, s.image, s.image_pull_policy, s.service_account) == ("ns", "img:1", "Never", "sa")
    assert s.env_configmaps == ("a", "b") and s.env_secrets == ("s",) and s.env_vars == ("X=1", "Y")
    assert s.kubeconfig == "/k/config"
    assert (s.job_ttl_seconds, s.backoff_limit, s.max_concurrent) == (60, 2, 4)


def test_settings_eks_needs_s3_and_uses_no_host_path():
    with pytest.raises(ValueError, match="s3://"):
        K8sSettings.from_env("eks", env={"KTX_DATA_DIR": "/mnt/data"})
    s = K8sSettings.from_env("eks", env={"KTX_DATA_DIR": "s3://bucket/ktx", "KTX_IMAGE": "1.dkr.ecr/x:1",
                                         "KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    assert s.data_dir == "s3://bucket/ktx" and s.host_data_path is None and s.in_cluster
    job = render_step_job(s, transformation="t", partition="p", k8s_config={})
    pod = job["spec"]["template"]["spec"]
    assert all("hostPath" not in v for v in pod["volumes"])
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["KTX_DATA_DIR"] == "s3://bucket/ktx"
    assert not any("AWS_SECRET" in name or "AWS_ACCESS" in name for name in env)


def test_settings_reject_bad_values():
    with pytest.raises(ValueError):
        K8sSettings.from_env("minikube", env={"KTX_IMAGE_PULL_POLICY": "Sometimes"})
    with pytest.raises(ValueError):
        K8sSettings.from_env("minikube", env={"KTX_JOB_TTL_SECONDS": "1h"})
    with pytest.raises(ValueError):
        K8sSettings.from_env("local", env={})
    with pytest.raises(ValueError):
        k8s_executor("docker")


def test_rendered_job_carries_resources_gpu_toleration_and_valid_labels():
    s = K8sSettings.from_env("minikube", env={})
    config = {
        "container_config": {"resources": {
            "requests": {"cpu": "1", "memory": "4500Mi", "ephemeral-storage": "1Gi", "nvidia.com/gpu": "1"},
            "limits": {"cpu": "1", "memory": "4950Mi", "ephemeral-storage": "1Gi", "nvidia.com/gpu": "1"},
        }},
        "pod_spec_config": {"node_selector": {"eks.amazonaws.com/instance-gpu-manufacturer": "nvidia"}},
    }
    job = render_step_job(s, transformation="co_occurrence", partition="part_00|total", k8s_config=config)
    pod = job["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["resources"] == config["container_config"]["resources"]
    assert pod["nodeSelector"] == {"eks.amazonaws.com/instance-gpu-manufacturer": "nvidia"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert job["metadata"]["annotations"]["ktx/partition-key"] == "part_00|total"
    assert object_rule_errors(job) == []
    assert pod["automountServiceAccountToken"] is False
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_k8s_executor_is_an_executor_definition():
    from dagster import ExecutorDefinition

    ex = k8s_executor("minikube")
    assert isinstance(ex, ExecutorDefinition)
    assert ex.name == "ktx_k8s_minikube"


def _pod(reason: str | None, limit: str | None = "1536Mi", request: str | None = "1Gi"):
    from kubernetes import client as k

    terminated = k.V1ContainerStateTerminated(reason=reason, exit_code=137 if reason == "OOMKilled" else 1)
    resources = k.V1ResourceRequirements(limits={"memory": limit} if limit else None,
                                         requests={"memory": request} if request else None)
    return k.V1Pod(
        metadata=k.V1ObjectMeta(name="dagster-step-abc-xyz", labels={"ktx/transformation": "cooccurrence"},
                                annotations={"ktx/partition-key": "total|3"}),
        spec=k.V1PodSpec(containers=[k.V1Container(name="dagster", resources=resources)]),
        status=k.V1PodStatus(phase="Failed", container_statuses=[k.V1ContainerStatus(
            name="dagster", image="i", image_id="", ready=False, restart_count=0,
            state=k.V1ContainerState(terminated=terminated))]),
    )


def test_oom_diagnosis_says_what_ran_out_and_how_to_raise_it():
    from ktx_dagster.executors.k8s import oom_diagnosis

    oom = oom_diagnosis(_pod("OOMKilled"))
    assert oom["message"] == (
        "cooccurrence[total|3] ran out of memory: its container was OOMKilled (exit 137) at its memory limit of "
        "1536Mi (request 1Gi). Give the transformation more with @transformation(memory='3Gi'), or split its "
        "work into more, smaller partitions.")
    assert {k: oom[k] for k in ("failure_reason", "exit_code", "memory_limit", "memory_request")} == {
        "failure_reason": "OOMKilled", "exit_code": 137, "memory_limit": "1536Mi", "memory_request": "1Gi"}
    assert "@transformation(memory='500Mi')" in oom_diagnosis(_pod("OOMKilled", "250Mi", "250Mi"))["message"]
    assert "memory limit" not in oom_diagnosis(_pod("OOMKilled", None, None))["message"]
    assert oom_diagnosis(_pod("Error")) is None  # any other failure is not an OOM


def test_grown_memory_multiplies_per_attempt_and_stops_at_the_cap():
    from ktx_dagster.executors.k8s import grown_memory

    resources = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1536Mi"}}
    once = grown_memory(resources, 2.0, "8Gi", 1)
    assert once["resources"] == {"requests": {"cpu": "1", "memory": "2048Mi"}, "limits": {"cpu": "1", "memory": "3072Mi"}}
    assert (once["was"], once["memory"]) == ("1536Mi", "3072Mi")
    capped = grown_memory(resources, 2.0, "4Gi", 3)  # 8x would be 8Gi / 12Gi
    assert capped["resources"]["requests"]["memory"] == capped["resources"]["limits"]["memory"] == "4096Mi"


def _disrupted_pod(reason: str | None):
    from kubernetes import client as k

    conditions = [k.V1PodCondition(type="Ready", status="False")]
    if reason:
        conditions.append(k.V1PodCondition(type="DisruptionTarget", status="True", reason=reason,
                                           message="Eviction API: evicting"))
    return k.V1Pod(metadata=k.V1ObjectMeta(name="dagster-step-abc-xyz"), spec=k.V1PodSpec(containers=[],
                   node_name="ip-10-0-1-7"), status=k.V1PodStatus(phase="Failed", conditions=conditions))


def test_disruption_diagnosis_from_the_pod_or_once_it_is_gone_from_the_job():
    from kubernetes import client as k

    from ktx_dagster.executors.k8s import disruption_diagnosis

    assert disruption_diagnosis(_disrupted_pod("PreemptionByScheduler"), None) == {
        "reason": "PreemptionByScheduler", "message": "Eviction API: evicting", "pod": "dagster-step-abc-xyz",
        "node": "ip-10-0-1-7"}
    by_policy = k.V1JobCondition(type="Failed", status="True", reason="PodFailurePolicy",
                                 message="Pod ktx/dagster-step-abc-q7x2z has condition DisruptionTarget matching "
                                         "FailJob rule at index 0")
    # the pod is gone (a real cluster removes it once the Job counted it): the Job's condition says it
    assert disruption_diagnosis(None, by_policy) == {
        "reason": "DisruptionTarget", "message": by_policy.message, "pod": "dagster-step-abc-q7x2z", "node": "unknown"}
    seen = {"pod": "dagster-step-abc-q7x2z", "node": "ip-10-0-1-7", "reason": "EvictionByEvictionAPI",
            "message": "Eviction API: evicting"}
    assert disruption_diagnosis(None, by_policy, seen)["reason"] == "EvictionByEvictionAPI"
    # anything else is a failure of the step
    assert disruption_diagnosis(_disrupted_pod(None), None) is None
    assert disruption_diagnosis(_pod("OOMKilled"), k.V1JobCondition(type="Failed", status="True",
                                                                    reason="BackoffLimitExceeded")) is None


def test_step_jobs_start_the_step_worker_entry_point_and_fail_on_disruption():
    job = render_step_job(K8sSettings.from_env("minikube", env={}), transformation="t", partition="p", k8s_config={})
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["python", "-c"] and "step_worker.main" in container["command"][2]
    assert container["args"][:3] == ["dagster", "api", "execute_step"]
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["podFailurePolicy"] == {"rules": [
        {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]}


@pytest.mark.reliability(
    "bad input", case="an expected_duration that is not a duration",
    injected="@transformation(expected_duration=...) with -5, 0, '10m', True, timedelta(0)",
    seen="TaskResourcesError at import: \"transformation 'late': expected_duration=... must be a number of seconds "
         "above 0 or a timedelta, e.g. expected_duration=600 or timedelta(minutes=10)\"",
    outcome="the code location does not load; nothing runs")
@pytest.mark.parametrize("bad", [-5, 0, "10m", True, datetime.timedelta(0)])
def test_expected_duration_is_validated_at_definition_time(bad):
    from ktx_dagster import transformation
    from ktx_dagster.task_resources import TaskResourcesError

    with pytest.raises(TaskResourcesError, match=r"transformation 'late': expected_duration=.* must be a number of "
                                                 r"seconds above 0 or a timedelta, e\.g\. expected_duration=600"):
        @transformation(partitions=["a"], expected_duration=bad)
        def late(context):
            return 1


def test_expected_duration_travels_as_an_op_tag_in_seconds():
    from ktx_dagster import transformation
    from ktx_dagster.task_resources import EXPECTED_DURATION_TAG

    @transformation(partitions=["a"], expected_duration=datetime.timedelta(minutes=10))
    def ten_minutes(context):
        return 1

    @transformation(partitions=["a"])
    def whenever(context):
        return 1

    assert ten_minutes.op.tags[EXPECTED_DURATION_TAG] == "600"
    assert EXPECTED_DURATION_TAG not in whenever.op.tags


def _kubeconfig(tmp_path, server: str) -> str:
    import yaml

    path = tmp_path / "kubeconfig.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "ktx",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "ktx", "context": {"cluster": "c", "user": "u"}}]}))
    return str(path)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cluster_access_names_the_kubeconfig_the_setting_and_the_fix(tmp_path):
    from ktx_dagster.executors.k8s import ClusterAccessError, check_cluster_access

    missing = str(tmp_path / "nope" / "config")
    with pytest.raises(ClusterAccessError) as exc:
        check_cluster_access(missing, None, "KUBECONFIG")
    assert str(exc.value).startswith(f"KUBECONFIG={missing}: no such kubeconfig file")
    assert "created no Job" in str(exc.value) and "KTX_KUBE_CONTEXT" in str(exc.value) and "minikube start" in str(exc.value)

    port = _closed_port()
    with pytest.raises(ClusterAccessError) as exc:
        check_cluster_access(_kubeconfig(tmp_path, f"https://127.0.0.1:{port}"), None, "KTX_KUBECONFIG", timeout=2)
    message = str(exc.value)
    assert message.startswith(f"the Kubernetes API server https://127.0.0.1:{port} does not answer"), message
    assert f"kubeconfig {tmp_path / 'kubeconfig.yaml'} (KTX_KUBECONFIG)" in message and "Fix:" in message

    with pytest.raises(ClusterAccessError) as exc:
        check_cluster_access(_kubeconfig(tmp_path, "https://127.0.0.1:1"), "elsewhere", "KUBECONFIG")
    assert str(exc.value).startswith("KTX_KUBE_CONTEXT=elsewhere: the kubeconfig"), str(exc.value)


def test_cluster_access_passes_for_a_cluster_that_answers(tmp_path):
    from ktx_dagster.executors.k8s import check_cluster_access
    from ktx_dagster.testing.k8s_emulator import KubeEmulator

    with KubeEmulator(str(tmp_path / "emu")) as emu:
        check_cluster_access(emu.kubeconfig_path, None, "KUBECONFIG")


def test_kubeconfig_source_names_the_setting_used():
    from ktx_dagster.executors.k8s import kubeconfig_source

    assert kubeconfig_source({"KTX_KUBECONFIG": "/a", "KUBECONFIG": "/b"}) == "KTX_KUBECONFIG"
    assert kubeconfig_source({"KUBECONFIG": "/b"}) == "KUBECONFIG"
    assert kubeconfig_source({}) == "KUBECONFIG (not set: the default)"


def test_step_poll_interval_defaults_to_a_quarter_second_and_follows_the_settings():
    assert K8sSettings.from_env("minikube", env={}).step_poll_seconds == 0.25
    # Dagster's own variable still counts where ktx's is not set.
    env = {"DAGSTER_STEP_DELEGATING_EXECUTOR_SLEEP_SECONDS": "0.5"}
    assert K8sSettings.from_env("minikube", env=env).step_poll_seconds == 0.5
    env["KTX_STEP_POLL_SECONDS"] = "0.1"
    assert K8sSettings.from_env("minikube", env=env).step_poll_seconds == 0.1
    for bad in ("0", "-1", "fast"):
        with pytest.raises(ValueError, match=f"KTX_STEP_POLL_SECONDS='{bad}' must be a number of seconds above 0"):
            K8sSettings.from_env("minikube", env={"KTX_STEP_POLL_SECONDS": bad})


def _job_on_the_k8s_executor():
    import dagster as dg

    @dg.op
    def nothing():
        pass

    @dg.job(executor_def=k8s_executor("minikube"))
    def on_k8s():
        nothing()

    return on_k8s


@pytest.mark.parametrize("run_config, expected", [({}, 0.25), ({"step_poll_interval_seconds": 0.05}, 0.05)])
def test_the_run_worker_looks_for_step_events_at_the_poll_interval(
    monkeypatch, ktx_k8s_cluster, run_config, expected,
):
    """Dagster's StepDelegatingExecutor sleeps 1 s between looks unless told otherwise: the
    executor must hand it the setting (env) or the run config's value. (The cluster is there
    because building the executor checks that its API server answers.)"""
    import dagster as dg

    monkeypatch.setenv("KUBECONFIG", ktx_k8s_cluster.kubeconfig)
    monkeypatch.delenv("KTX_STEP_POLL_SECONDS", raising=False)
    monkeypatch.delenv("DAGSTER_STEP_DELEGATING_EXECUTOR_SLEEP_SECONDS", raising=False)
    definition = k8s_executor("minikube")
    with dg.DagsterInstance.ephemeral() as instance:
        built = definition.executor_creation_fn(dg.InitExecutorContext(
            job=dg.reconstructable(_job_on_the_k8s_executor), executor_def=definition,
            executor_config={"retries": {"enabled": {}}, **run_config}, instance=instance))
    # Dagster's loop sleeps on this attribute; an upgrade that renames it fails here.
    assert built._sleep_seconds == expected

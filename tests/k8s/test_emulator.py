"""The Kubernetes API emulator, through the official kubernetes client."""

from __future__ import annotations

import base64
import time

import kubernetes
import pytest
from kubernetes import client, watch

from ktx_dagster.testing.k8s_emulator import KubeEmulator, match_label_selector

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(60)]


@pytest.fixture
def emu(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.txt").write_text("hello\n")
    with KubeEmulator(str(tmp_path / "emu"), host_paths={"/mnt/data": str(tmp_path / "data")}, namespaces=["t"]) as e:
        yield e


@pytest.fixture
def api(emu):
    api_client = kubernetes.config.new_client_from_config(config_file=emu.kubeconfig_path)
    return client.CoreV1Api(api_client), client.BatchV1Api(api_client)


def _job(name, script, backoff=0, env=None, labels=None, **spec):
    return {
        "metadata": {"name": name, "labels": labels or {"app": "t"}},
        "spec": {
            "backoffLimit": backoff,
            **spec,
            "template": {
                "metadata": {"labels": {"app": "t", "ktx/partition": name}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "ignored:latest",
                            "command": ["sh", "-c", script],
                            "env": env or [],
                            "volumeMounts": [{"name": "data", "mountPath": "/mnt/data"}],
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}},
                        }
                    ],
                    "volumes": [{"name": "data", "hostPath": {"path": "/mnt/data"}}],
                },
            },
        },
    }


def _wait_job(batch, name, ns="t", timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = batch.read_namespaced_job_status(name, ns)
        if any(c.type in ("Complete", "Failed") and c.status == "True" for c in job.status.conditions or []):
            return job
        time.sleep(0.05)
    raise TimeoutError(name)


def test_job_runs_pod_with_env_volume_and_logs(emu, api, tmp_path):
    core, batch = api
    core.create_namespaced_config_map("t", {"metadata": {"name": "cm"}, "data": {"GREETING": "hi"}})
    core.create_namespaced_secret("t", {"metadata": {"name": "s"}, "data": {"pw": base64.b64encode(b"sekret").decode()}})
    env = [
        {"name": "KTX_DATA_DIR", "value": "/mnt/data"},
        {"name": "G", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "GREETING"}}},
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
    ]
    script = 'for i in 1 2 3 4 5; do echo line$i; done; echo "$G $PW $MEM"; cat $KTX_DATA_DIR/in.txt > $KTX_DATA_DIR/out-$POD.txt'
    batch.create_namespaced_job("t", _job("ok", script, env=env))
    job = _wait_job(batch, "ok")
    assert job.status.succeeded == 1 and job.status.active is None
    assert [c.type for c in job.status.conditions][-1] == "Complete"
    (pod,) = core.list_namespaced_pod("t", label_selector="job-name=ok").items
    assert pod.metadata.labels["ktx/partition"] == "ok"
    assert pod.metadata.owner_references[0].kind == "Job"
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    assert pod.status.qos_class == "Burstable"
    log = core.read_namespaced_pod_log(pod.metadata.name, "t", _preload_content=False).data.decode()
    assert log.splitlines()[:5] == [f"line{i}" for i in range(1, 6)]
    assert "hi sekret 64" in log
    tail = core.read_namespaced_pod_log(pod.metadata.name, "t", tail_lines=2, _preload_content=False).data.decode()
    assert tail.splitlines() == ["line5", "hi sekret 64"]
    stamped = core.read_namespaced_pod_log(pod.metadata.name, "t", tail_lines=1, timestamps=True, _preload_content=False).data.decode()
    assert stamped.split(" ", 1)[0].endswith("Z") and stamped.endswith("hi sekret 64\n")
    assert (tmp_path / "data" / f"out-{pod.metadata.name}.txt").read_text() == "hello\n"


def test_backoff_limit_creates_new_pods_then_fails(emu, api):
    core, batch = api
    batch.create_namespaced_job("t", _job("bad", "echo boom; exit 7", backoff=2))
    job = _wait_job(batch, "bad")
    assert job.status.failed == 3
    failed = [c for c in job.status.conditions if c.type == "Failed"][0]
    assert failed.reason == "BackoffLimitExceeded"
    pods = core.list_namespaced_pod("t", label_selector="job-name=bad").items
    assert len(pods) == 3
    assert {p.status.container_statuses[0].state.terminated.exit_code for p in pods} == {7}
    reasons = [e.reason for e in core.list_namespaced_event("t", field_selector="involvedObject.name=bad").items]
    assert reasons.count("SuccessfulCreate") == 3 and "BackoffLimitExceeded" in reasons


def test_indexed_parallel_job(emu, api):
    core, batch = api
    batch.create_namespaced_job(
        "t", _job("idx", "echo $JOB_COMPLETION_INDEX", completions=3, parallelism=2, completionMode="Indexed")
    )
    job = _wait_job(batch, "idx")
    assert job.status.succeeded == 3 and job.status.completed_indexes == "0-2"
    pods = core.list_namespaced_pod("t", label_selector="job-name=idx").items
    assert sorted(p.metadata.annotations["batch.kubernetes.io/job-completion-index"] for p in pods) == ["0", "1", "2"]


def test_watch_selectors_and_delete(emu, api):
    core, batch = api
    batch.create_namespaced_job("t", _job("w1", "sleep 30", labels={"app": "t", "tier": "a"}))
    batch.create_namespaced_job("t", _job("w2", "true", labels={"app": "t", "tier": "b"}))
    assert [j.metadata.name for j in batch.list_namespaced_job("t", label_selector="tier in (a),app=t").items] == ["w1"]
    assert [j.metadata.name for j in batch.list_namespaced_job("t", label_selector="tier!=a").items] == ["w2"]
    assert [j.metadata.name for j in batch.list_namespaced_job("t", field_selector="metadata.name=w2").items] == ["w2"]
    seen = []
    for event in watch.Watch().stream(batch.list_namespaced_job, "t", label_selector="tier=b", timeout_seconds=10):
        seen.append((event["type"], event["object"].metadata.name))
        if any(c.type == "Complete" for c in event["object"].status.conditions or []):
            break
    assert seen[0] == ("ADDED", "w2") and {name for _, name in seen} == {"w2"}
    # running pod: delete the job with propagation -> the pod process is killed and gone
    emu.wait_for(lambda: [p for p in emu.pods("t", "job-name=w1") if p["status"]["phase"] == "Running"])
    batch.delete_namespaced_job("w1", "t", propagation_policy="Background")
    assert core.list_namespaced_pod("t", label_selector="job-name=w1").items == []
    with pytest.raises(kubernetes.client.ApiException) as exc:
        batch.read_namespaced_job("w1", "t")
    assert exc.value.status == 404


def test_validation_like_a_real_api_server(emu, api):
    core, batch = api
    cases = [
        (_job("x" * 64, "true"), 422),  # job names become a label value: <= 63
        (_job("badlabel", "true", labels={"ktx/partition": "a/b|c"}), 422),
        (_job("Upper", "true"), 422),
    ]
    bad_resources = _job("res", "true")
    bad_resources["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}
    cases.append((bad_resources, 422))
    no_image = _job("noimage", "true")
    del no_image["spec"]["template"]["spec"]["containers"][0]["image"]
    cases.append((no_image, 422))
    for body, status in cases:
        with pytest.raises(kubernetes.client.ApiException) as exc:
            batch.create_namespaced_job("t", body)
        assert exc.value.status == status, body["metadata"]["name"]
    with pytest.raises(kubernetes.client.ApiException) as exc:
        batch.create_namespaced_job("missing-ns", _job("ok", "true"))
    assert exc.value.status == 404
    batch.create_namespaced_job("t", _job("dup", "true"))
    with pytest.raises(kubernetes.client.ApiException) as exc:
        batch.create_namespaced_job("t", _job("dup", "true"))
    assert exc.value.status == 409


def test_missing_configmap_waits_like_a_kubelet(emu, api):
    core, batch = api
    env = [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "later", "key": "x"}}}]
    batch.create_namespaced_job("t", _job("waits", "echo $X", env=env))
    pod = emu.wait_for(lambda: [p for p in emu.pods("t", "job-name=waits")
                                if p["status"]["containerStatuses"][0]["state"].get("waiting", {}).get("reason") == "CreateContainerConfigError"])[0]
    assert pod["status"]["phase"] == "Pending"
    core.create_namespaced_config_map("t", {"metadata": {"name": "later"}, "data": {"x": "now"}})
    assert _wait_job(batch, "waits").status.succeeded == 1


def test_label_selector_parser():
    labels = {"a": "1", "b": "2"}
    assert match_label_selector(labels, "a=1,b in (2,3)")
    assert match_label_selector(labels, "a,!c,b notin (3)")
    assert not match_label_selector(labels, "a!=1")
    assert not match_label_selector(labels, "c")


DISRUPTION_FAILS_JOB = {"rules": [{"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget"}]}]}


def test_an_evicted_pod_is_a_disruption_target_and_gone(emu, api):
    """The Eviction API (what `kubectl drain` sends) through the official client: the pod is
    marked DisruptionTarget at once, gets SIGTERM, ends Failed, its Job fails by its
    podFailurePolicy (not by backoff) with the real controller's message, and the pod object
    is removed, as on a real cluster."""
    core, batch = api
    script = "trap 'echo got TERM; exit 143' TERM; echo started; sleep 30 & wait"
    batch.create_namespaced_job("t", _job("drained", script, podFailurePolicy=DISRUPTION_FAILS_JOB))
    pod = emu.wait_for(lambda: [p for p in emu.pods("t", "job-name=drained")
                                if "started" in emu.pod_log("t", p["metadata"]["name"])])[0]
    name = pod["metadata"]["name"]
    # Follow the pod through a watch opened before the eviction: it may be stopped and gone
    # before a GET could read it (its trap exits at once), on a real cluster as here.
    since = core.list_namespaced_pod("t", field_selector=f"metadata.name={name}").metadata.resource_version
    core.create_namespaced_pod_eviction(name, "t", client.V1Eviction(
        metadata=client.V1ObjectMeta(name=name, namespace="t"),
        delete_options=client.V1DeleteOptions(grace_period_seconds=1)))
    seen = []
    for event in watch.Watch().stream(core.list_namespaced_pod, "t", field_selector=f"metadata.name={name}",
                                      resource_version=since, timeout_seconds=20):
        seen.append(event)
        if event["type"] == "DELETED":
            break
    marked = next(e["object"] for e in seen if e["object"].metadata.deletion_timestamp is not None)
    (condition,) = [c for c in marked.status.conditions if c.type == "DisruptionTarget"]
    assert (condition.status, condition.reason) == ("True", "EvictionByEvictionAPI")
    assert seen[-1]["type"] == "DELETED", [e["type"] for e in seen]
    job = _wait_job(batch, "drained")
    (failed,) = [c for c in job.status.conditions if c.type == "Failed"]
    assert failed.reason == "PodFailurePolicy", failed
    assert failed.message == f"Pod t/{name} has condition DisruptionTarget matching FailJob rule at index 0"
    assert job.status.failed == 1
    emu.wait_for(lambda: not emu.pods("t", "job-name=drained"))
    # before it went: Failed, the container told to stop (SIGTERM, its trap ran), the condition kept
    last = [o for _rv, plural, _t, o in emu._history if plural == "pods" and o["metadata"]["name"] == name][-1]
    assert last["status"]["phase"] == "Failed"
    assert any(c["type"] == "DisruptionTarget" for c in last["status"]["conditions"])
    assert last["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 143


def test_pod_failure_policy_exit_codes(emu, api):
    """onExitCodes: FailJob ends the Job at the first matching failure, whatever the backoff
    limit; Ignore does not count the failure (a new pod is made)."""
    _core, batch = api
    fail = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}
    batch.create_namespaced_job("t", _job("fatal", "exit 42", backoff=3, podFailurePolicy=fail))
    job = _wait_job(batch, "fatal")
    (failed,) = [c for c in job.status.conditions if c.type == "Failed"]
    assert failed.reason == "PodFailurePolicy" and "failed with exit code 42 matching FailJob rule" in failed.message
    assert job.status.failed == 1
    ignore = {"rules": [{"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}}]}
    batch.create_namespaced_job("t", _job("ignored", 'test -e "$KTX_DATA_DIR/once" || { touch "$KTX_DATA_DIR/once"; exit 7; }',
                                          env=[{"name": "KTX_DATA_DIR", "value": "/mnt/data"}], podFailurePolicy=ignore))
    job = _wait_job(batch, "ignored")
    assert job.status.succeeded == 1 and not job.status.failed
    assert len(emu.pods("t", "job-name=ignored")) == 2


def test_pod_failure_policy_needs_restart_policy_never(emu, api):
    _core, batch = api
    body = _job("onfailure", "true", podFailurePolicy=DISRUPTION_FAILS_JOB)
    body["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    with pytest.raises(kubernetes.client.ApiException) as exc:
        batch.create_namespaced_job("t", body)
    assert exc.value.status == 422 and "podFailurePolicy" in exc.value.body


def test_replacing_a_secret_with_string_data_stores_it_as_data(emu, api):
    """As a real API server: stringData is write-only on a replace too (a pod's secretKeyRef
    would otherwise wait for a key that never comes)."""
    core, _batch = api
    core.create_namespaced_secret("t", {"metadata": {"name": "pw"}, "stringData": {"password": "one"}})  # pragma: allowlist secret
    core.replace_namespaced_secret("pw", "t", {"metadata": {"name": "pw"}, "stringData": {"password": "two"}})  # pragma: allowlist secret
    secret = core.read_namespaced_secret("pw", "t")
    assert base64.b64decode(secret.data["password"]) == b"two" and not secret.string_data

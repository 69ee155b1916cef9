"""Partition steps as Kubernetes Jobs, runs launched by the DEFAULT run launcher.

Against the emulator (or KTX_TEST_KUBECONFIG): a real Dagster instance, a real code server
and run worker, the official kubernetes client, and step "pods" that are processes.
"""

from __future__ import annotations

import pytest
from dagster import AssetKey, DagsterEventType, DagsterRunStatus

from ktx_dagster.executors.k8s import sanitize_label_value

from k8s_code_location import KEYS, LIMITS, REQUESTS, out_relpath
from k8s_harness import TEST_IMAGE

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(240)]


def _run_jobs(harness, run_id: str, count: int = 0) -> list[dict]:
    selector = f"dagster/run-id={run_id}"
    if count:
        return harness.finished_jobs(selector, count)
    return harness.cluster.jobs(label_selector=selector)


def test_default_run_launcher_is_what_launches(harness):
    from dagster._core.launcher import DefaultRunLauncher

    assert type(harness.instance.run_launcher) is DefaultRunLauncher


def test_upstream_executor_fails_under_default_run_launcher(harness):
    """The bug we fix: dagster-k8s 0.29.x's own executor cannot launch a step here."""
    run_id = harness.launch("upstream_square_job", KEYS[0])
    run = harness.wait([run_id])[run_id]
    assert run.status == DagsterRunStatus.FAILURE
    text = "\n".join(
        str(r.dagster_event.event_specific_data) + (r.user_message or "")
        for r in harness.events(run_id)
    )
    assert "AttributeError" in text and "image_pull_policy" in text, text[-3000:]
    assert _run_jobs(harness, run_id) == []  # it never got as far as creating a Job


def test_partitions_run_as_one_job_each(harness):
    cluster = harness.cluster
    # The keys a label cannot hold as they are ("a/b c", 80 chars): sanitized + hashed. Plain
    # keys (part_1, a slice's 0-39) run through the project's own definitions in
    # test_project_on_k8s.py, so one run fewer here.
    keys = [k for k in KEYS if sanitize_label_value(k) != k]
    assert len(keys) == 2
    run_ids = {key: harness.launch("square_job", key) for key in keys}
    runs = harness.wait(list(run_ids.values()), timeout=180)
    assert {r.status for r in runs.values()} == {DagsterRunStatus.SUCCESS}, harness.debug()

    for key, run_id in run_ids.items():
        jobs = _run_jobs(harness, run_id, count=1)
        assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]
        job = jobs[0]
        meta, spec = job["metadata"], job["spec"]
        # labels: sanitized partition, transformation; raw key kept as an annotation
        assert meta["labels"]["ktx/transformation"] == "emu_square"
        assert meta["labels"]["ktx/partition"] == sanitize_label_value(key)
        assert meta["annotations"]["ktx/partition-key"] == key
        assert meta["namespace"] == cluster.namespace
        assert spec["backoffLimit"] == 0 and spec["ttlSecondsAfterFinished"] == 3600
        pod_spec = spec["template"]["spec"]
        tmpl_labels = spec["template"]["metadata"]["labels"]
        assert tmpl_labels["ktx/partition"] == sanitize_label_value(key)
        assert tmpl_labels["ktx/transformation"] == "emu_square"
        (container,) = pod_spec["containers"]
        # requests/limits exactly as declared by the asset's op tags
        assert container["resources"]["requests"] == REQUESTS
        assert container["resources"]["limits"] == LIMITS
        assert pod_spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
        assert {"key": "ktx/spot", "operator": "Exists", "effect": "NoSchedule"} in pod_spec["tolerations"]
        assert container["image"] == TEST_IMAGE
        assert container["imagePullPolicy"] == "IfNotPresent"
        assert pod_spec["serviceAccountName"] == "ktx-step"
        assert pod_spec["securityContext"]["runAsNonRoot"] is True
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["KTX_DATA_DIR"] == "/mnt/data"
        assert env["DAGSTER_HOME"] == "/opt/dagster/dagster_home"
        assert "DAGSTER_PG_PASSWORD" in env  # from the ktx-postgres Secret
        assert {"configMapRef": {"name": "ktx-instance-env"}} in container["envFrom"]
        volumes = {v["name"]: v for v in pod_spec["volumes"]}
        assert volumes["ktx-data"]["hostPath"]["path"] == "/mnt/data"
        assert volumes["dagster-instance"]["configMap"]["name"] == "ktx-dagster-instance"
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts["/mnt/data"]["name"] == "ktx-data"
        assert mounts["/opt/dagster/dagster_home/dagster.yaml"]["subPath"] == "dagster.yaml"
        # the job's pod, and its completion
        pods = cluster.pods(label_selector=f"job-name={meta['name']}")
        assert len(pods) == 1
        assert pods[0]["status"]["phase"] == "Succeeded"
        assert pods[0]["metadata"]["labels"]["ktx/partition"] == sanitize_label_value(key)
        assert job["status"]["succeeded"] == 1
        assert any(c["type"] == "Complete" for c in job["status"]["conditions"])

        # the step ran in that pod and wrote its output to the mounted data dir
        out = cluster.data_dir / out_relpath("emu_square", key)
        assert out.read_text().splitlines() == [key, pods[0]["metadata"]["name"]]
        # events in the instance
        types = [r.dagster_event.event_type for r in harness.events(run_id)]
        assert DagsterEventType.STEP_WORKER_STARTING in types
        assert DagsterEventType.STEP_SUCCESS in types
        starting = harness.events(run_id, DagsterEventType.STEP_WORKER_STARTING)[0]
        assert meta["name"] in starting.user_message
        mat = harness.events(run_id, DagsterEventType.ASSET_MATERIALIZATION)[0]
        materialization = mat.dagster_event.event_specific_data.materialization
        assert materialization.partition == key
        assert materialization.metadata["hostname"].value == pods[0]["metadata"]["name"]

    assert harness.instance.get_materialized_partitions(AssetKey("emu_square")) == set(keys)
    if cluster.emulated:
        # all pods exited 0 and every pod got KTX_DATA_DIR mapped onto the local data dir
        for pod in cluster.pods(label_selector="ktx/transformation=emu_square"):
            (status,) = pod["status"]["containerStatuses"]
            assert status["state"]["terminated"]["exitCode"] == 0


def test_crashing_pod_fails_the_step_with_its_log_tail(harness):
    run_id = harness.launch("crash_job", KEYS[0])
    run = harness.wait([run_id], timeout=120)[run_id]
    assert run.status == DagsterRunStatus.FAILURE
    failures = harness.events(run_id, DagsterEventType.STEP_FAILURE)
    assert len(failures) == 1, harness.debug()
    message = failures[0].dagster_event.event_specific_data.error.message
    assert "failed health check" in message
    assert "Discovered failed Kubernetes job" in message
    assert "crash-marker line 29" in message  # the pod's log tail
    assert "exit code 3" in message
    (job,) = _run_jobs(harness, run_id, count=1)
    assert job["status"]["failed"] == 1
    assert any(c["type"] == "Failed" and c["reason"] == "BackoffLimitExceeded" for c in job["status"]["conditions"])


@pytest.mark.heavy
def test_retry_policy_launches_a_new_job_and_succeeds(harness):
    """A step that fails inside a healthy pod, then succeeds on its retry in a new Job.
    Heavy: the default suite covers retry Jobs with the project's own Hello World
    (`retries=1`, test_project_on_k8s.py); this adds the retry that succeeds."""
    run_id = harness.launch("flaky_job", KEYS[1])
    run = harness.wait([run_id], timeout=150)[run_id]
    assert run.status == DagsterRunStatus.SUCCESS, harness.debug()
    jobs = _run_jobs(harness, run_id, count=2)
    assert len(jobs) == 2, [j["metadata"]["name"] for j in jobs]
    first, second = jobs
    assert second["metadata"]["name"] == first["metadata"]["name"] + "-1"
    for job in jobs:
        assert job["metadata"]["labels"]["ktx/transformation"] == "emu_flaky"
        assert job["metadata"]["labels"]["ktx/partition"] == sanitize_label_value(KEYS[1])
        assert job["status"]["succeeded"] == 1  # the step failed *inside* a healthy pod
    types = [r.dagster_event.event_type for r in harness.events(run_id)]
    assert types.count(DagsterEventType.STEP_UP_FOR_RETRY) == 1
    assert types.count(DagsterEventType.STEP_WORKER_STARTING) == 2
    assert DagsterEventType.STEP_SUCCESS in types

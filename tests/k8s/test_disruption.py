"""Disruption is not failure, stragglers are told: a step pod evicted while it runs (the
Eviction API, what `kubectl drain` and spot interruption handlers send) is started again as a
new Job without using the step's retries; a step running past its expected duration is told
once in the run's log with its pod and node. Runs unchanged against KTX_TEST_KUBECONFIG
(the eviction goes through the Kubernetes API; only the emulator's node is named here)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterRunStatus
from kubernetes import client

from k8s_harness import REPO_ROOT, dagster_harness

LOCATION = Path(__file__).with_name("disruption_code_location.py")
pytestmark = [pytest.mark.k8s, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def disruptions(ktx_k8s_cluster_module, tmp_path_factory) -> Iterator:
    from dagster._core.workspace.load_target import PythonFileTarget

    target = PythonFileTarget(python_file=str(LOCATION), attribute="defs", working_directory=str(REPO_ROOT),
                              location_name="disruption")
    with dagster_harness(ktx_k8s_cluster_module, tmp_path_factory.mktemp("home"), target=target,
                         location_name="disruption", extra_env={"KTX_DEPLOYMENT": "minikube"}) as h:
        yield h


def _wait(predicate, timeout: float = 90.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    raise TimeoutError(what)


def _log(cluster, pod: dict) -> str:
    try:
        return cluster.pod_log(pod["metadata"]["name"])
    except client.ApiException:  # its container has not started yet
        return ""


def _engine_events(h, run_id: str, key: str) -> list:
    return [e for e in h.events(run_id, DagsterEventType.ENGINE_EVENT)
            if key in e.dagster_event.engine_event_data.metadata]


@pytest.mark.reliability(
    "pod failure", case="a step pod evicted (node drain, preemption, spot interruption)",
    injected="the running step pod evicted through the Kubernetes Eviction API (policy/v1, grace 4s), as "
             "`kubectl drain` does; the step has retries=0",
    seen="an engine event '<transformation>[<partition>]: its pod <pod> on node <node> was disrupted "
         "(EvictionByEvictionAPI: ...). That is not a failure of the step: it starts again as Kubernetes Job "
         "<job>-r1 ...' with metadata ktx/disruption_reason, ktx/pod, ktx/node",
    outcome="the run succeeds without a retry: two Jobs (the evicted one failed by its podFailurePolicy, never "
            "re-created by Kubernetes; the -r1 one complete), one step success, no step failure")
def test_an_evicted_step_pod_is_started_again_without_using_a_retry(disruptions):
    h, cluster = disruptions, disruptions.cluster
    run_id = h.materialize("patient", "only")
    selector = f"dagster/run-id={run_id}"
    pod = _wait(lambda: [p for p in cluster.pods(selector) if "patient waiting" in _log(cluster, p)],
                what="the step pod to run")[0]
    cluster.core.create_namespaced_pod_eviction(pod["metadata"]["name"], cluster.namespace, client.V1Eviction(
        metadata=client.V1ObjectMeta(name=pod["metadata"]["name"], namespace=cluster.namespace),
        delete_options=client.V1DeleteOptions(grace_period_seconds=4)))
    _wait(lambda: len(cluster.jobs(selector)) == 2 or h.instance.get_run_by_id(run_id).is_finished,
          what="the step's second Job")
    (cluster.data_dir / "go").touch()
    run = h.wait([run_id], timeout=120)[run_id]
    assert run.status == DagsterRunStatus.SUCCESS, h.debug()

    first, again = h.finished_jobs(selector, 2)
    assert again["metadata"]["name"] == first["metadata"]["name"] + "-r1"
    assert first["spec"]["backoffLimit"] == 0 == again["spec"]["backoffLimit"]
    (failed,) = [c for c in first["status"]["conditions"] if c["type"] == "Failed"]
    assert failed["reason"] == "PodFailurePolicy" and "DisruptionTarget" in failed["message"], failed
    assert first["status"]["failed"] == 1 and "active" not in first["status"]  # Kubernetes made no new pod
    # the step's events: one success, no failure, no retry
    kinds = [e.dagster_event.event_type for e in h.events(run_id)]
    assert kinds.count(DagsterEventType.STEP_SUCCESS) == 1
    assert DagsterEventType.STEP_FAILURE not in kinds and DagsterEventType.STEP_UP_FOR_RETRY not in kinds
    (told,) = _engine_events(h, run_id, "ktx/disruption_reason")
    metadata = told.dagster_event.engine_event_data.metadata
    assert metadata["ktx/disruption_reason"].value == "EvictionByEvictionAPI"
    assert metadata["ktx/pod"].value == pod["metadata"]["name"]
    assert metadata["ktx/new_job"].value == again["metadata"]["name"]
    assert told.user_message.startswith(f"patient[only]: its pod {pod['metadata']['name']} on node "
                                        f"{pod['spec']['nodeName']} was disrupted (EvictionByEvictionAPI"), told.user_message
    assert "not a failure of the step" in told.user_message
    # the disruption's SIGTERM did not fail the step: the entry point kept it from Dagster's worker
    if cluster.emulated:
        assert "this pod is being disrupted" in "\n".join(
            line for _ts, line in cluster.emulator._runtimes[(cluster.namespace, pod["metadata"]["name"])].lines)


@pytest.mark.reliability(
    "pod failure", case="a straggler: a step running past its expected duration",
    injected="@transformation(expected_duration=1) whose step sleeps 8s",
    seen="one engine event '<transformation>[<partition>] is still running after <n>s, past its expected duration "
         "of 1s ...; it runs as pod <pod> on node <node>' with metadata ktx/elapsed_seconds, ktx/pod, ktx/node",
    outcome="told once however many health checks see it; the step is not stopped and the run succeeds")
def test_a_straggler_is_told_once_with_its_pod_and_node(disruptions):
    h, cluster = disruptions, disruptions.cluster
    run_id = h.materialize("slow", "only")
    run = h.wait([run_id], timeout=120)[run_id]
    assert run.status == DagsterRunStatus.SUCCESS, h.debug()
    (job,) = h.finished_jobs(f"dagster/run-id={run_id}", 1)
    (pod,) = cluster.pods(f"job-name={job['metadata']['name']}")
    (told,) = _engine_events(h, run_id, "ktx/straggler")
    metadata = told.dagster_event.engine_event_data.metadata
    assert metadata["ktx/pod"].value == pod["metadata"]["name"]
    assert metadata["ktx/node"].value == pod["spec"]["nodeName"]
    assert metadata["ktx/expected_seconds"].value == 1.0 and metadata["ktx/elapsed_seconds"].value > 1.0
    assert told.user_message.startswith("slow[only] is still running after "), told.user_message
    assert f"it runs as pod {pod['metadata']['name']} on node {pod['spec']['nodeName']}" in told.user_message


@pytest.mark.reliability(
    "pod failure", case="a step pod disrupted again and again",
    injected="the step's pod evicted through the Eviction API four times in a row (each new Job's pod)",
    seen="three restarts told in the run's log, then the step fails with '<transformation>[<partition>]: its pod "
         "... was disrupted (...), for the 4th time; ktx started the step again 3 times after disruptions and "
         "stops here. Look at what disrupts the pods ...'",
    outcome="the step fails plainly after 3 restarts (Jobs -r1..-r3), not in a loop; the run fails")
@pytest.mark.heavy  # four evictions in a row: the single eviction above runs by default
def test_a_step_disrupted_again_and_again_fails_plainly(disruptions):
    h, cluster = disruptions, disruptions.cluster
    (cluster.data_dir / "go").unlink(missing_ok=True)
    run_id = h.materialize("patient", "only")
    selector = f"dagster/run-id={run_id}"
    for round_ in range(4):
        pod = _wait(lambda: [p for p in cluster.pods(selector) if "patient waiting" in _log(cluster, p)
                             and not p["metadata"].get("deletionTimestamp")], what=f"pod {round_ + 1}")[0]
        cluster.core.create_namespaced_pod_eviction(pod["metadata"]["name"], cluster.namespace, client.V1Eviction(
            metadata=client.V1ObjectMeta(name=pod["metadata"]["name"], namespace=cluster.namespace),
            delete_options=client.V1DeleteOptions(grace_period_seconds=1)))
        _wait(lambda: len(cluster.jobs(selector)) == round_ + 2 or h.instance.get_run_by_id(run_id).is_finished,
              what=f"the step's Job after eviction {round_ + 1}")
    run = h.wait([run_id], timeout=120)[run_id]
    assert run.status == DagsterRunStatus.FAILURE
    names = [j["metadata"]["name"] for j in cluster.jobs(selector)]
    assert names == [names[0]] + [f"{names[0]}-r{n}" for n in (1, 2, 3)], names
    assert len(_engine_events(h, run_id, "ktx/disruption_reason")) == 3
    (failure,) = h.events(run_id, DagsterEventType.STEP_FAILURE)
    message = failure.dagster_event.event_specific_data.error.message
    assert "patient[only]: its pod " in message and "for the 4th time; ktx started the step again 3 times after " \
        "disruptions and stops here" in message, message

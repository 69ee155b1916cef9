"""A Dagster step over its memory limit, in a container pod of the real image: the cgroup
OOM killer ends it (exit 137, reason OOMKilled in the pod status), the run fails and says so;
with memory_growth, the retry asks for more and gets through."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterRunStatus

from k8s_harness import REPO_ROOT, TEST_IMAGE, dagster_harness, postgres_instance_yaml
from ktx_dagster.testing.containers import require_image
from ktx_dagster.testing.pytest_plugin import k8s_test_cluster

LOCATION = Path(__file__).with_name("oom_code_location.py")
pytestmark = [pytest.mark.k8s, pytest.mark.container, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def oom(tmp_path_factory, ktx_postgres) -> Iterator:
    """The emulated cluster with container pods and the OOM code location (mounted into the
    containers at its own path), on a PostgreSQL instance: the harness."""
    from dagster._core.workspace.load_target import PythonFileTarget

    require_image(TEST_IMAGE)
    tmp = tmp_path_factory.mktemp("oom")
    pg = ktx_postgres.create_database(f"ktx_{uuid.uuid4().hex[:10]}")
    target = PythonFileTarget(python_file=str(LOCATION), attribute="defs", working_directory=str(REPO_ROOT),
                              location_name="oom")
    with k8s_test_cluster(tmp / "cluster", project_dir=REPO_ROOT, runtime="docker",
                          container_mounts=((str(LOCATION), str(LOCATION), True),)) as cluster:
        os.chown(cluster.data_dir, 10001, 10001)  # the data mount belongs to the step pods' user
        with dagster_harness(cluster, tmp / "home", instance_yaml=postgres_instance_yaml(pg), target=target,
                             location_name="oom", extra_env={"KTX_DEPLOYMENT": "minikube"}) as h:
            yield h


@pytest.mark.reliability(
    "pod failure", case="a step pod OOMKilled",
    injected="a step allocating past its 512Mi limit in a container pod (the real cgroup OOM killer)",
    seen="the step fails with '<transformation>[<partition>] ran out of memory ... at its memory limit of 512Mi ... "
         "@transformation(memory=\'1Gi\')'; engine event metadata ktx/failure_reason=OOMKilled, ktx/memory_limit",
    outcome="only that step fails; a failure sensor can tell OOM from other failures by its metadata")
def test_a_step_over_its_memory_limit_is_oom_killed(oom):
    h, cluster = oom, oom.cluster
    run_id = h.materialize("greedy", "only")
    run = h.wait([run_id], timeout=240)[run_id]
    assert run.status == DagsterRunStatus.FAILURE
    (job,) = h.finished_jobs(f"dagster/run-id={run_id}", 1, timeout=120)
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "512Mi"
    (pod,) = cluster.pods(label_selector=f"job-name={job['metadata']['name']}")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (pod["status"]["phase"], terminated["reason"], terminated["exitCode"]) == ("Failed", "OOMKilled", 137)
    assert "survived" not in cluster.pod_log(pod["metadata"]["name"])
    # told plainly: what ran out, the limit, and how to raise it; a sensor reads the reason
    failure = next(e for e in h.events(run_id, DagsterEventType.STEP_FAILURE))
    message = failure.dagster_event.event_specific_data.error.message
    assert "greedy[only] ran out of memory: its container was OOMKilled (exit 137)" in message, message
    assert "memory limit of 512Mi" in message and "@transformation(memory='1Gi')" in message, message
    (diagnosis,) = [e for e in h.events(run_id, DagsterEventType.ENGINE_EVENT)
                    if "ktx/failure_reason" in e.dagster_event.engine_event_data.metadata]
    metadata = diagnosis.dagster_event.engine_event_data.metadata
    assert metadata["ktx/failure_reason"].value == "OOMKilled" and metadata["ktx/memory_limit"].value == "512Mi"


@pytest.mark.reliability(
    "pod failure", case="a retry after an OOM kill asks for more memory",
    injected="the same step with memory_growth=4.0, max_memory set, and a retry policy",
    seen="an engine event 'Attempt 2 ... asks for 2048Mi of memory (was 512Mi)'; the retry's pod shows the new "
         "request and limit",
    outcome="the retry succeeds; the grown memory never passes max_memory")
def test_a_retry_after_an_oom_kill_asks_for_more_memory(oom):
    """memory_growth: the first attempt is OOMKilled at 512Mi, the retry's pod asks for 2048Mi
    (request and limit) and succeeds; the run's log says why it grew."""
    h, cluster = oom, oom.cluster
    run_id = h.materialize("grows", "only")
    run = h.wait([run_id], timeout=240)[run_id]
    assert run.status == DagsterRunStatus.SUCCESS, h.debug()
    first, retry = h.finished_jobs(f"dagster/run-id={run_id}", 2, timeout=120)
    memory = [j["spec"]["template"]["spec"]["containers"][0]["resources"] for j in (first, retry)]
    assert memory[0]["limits"]["memory"] == memory[0]["requests"]["memory"] == "512Mi"
    assert memory[1]["limits"]["memory"] == memory[1]["requests"]["memory"] == "2048Mi"
    (oom_pod,) = cluster.pods(label_selector=f"job-name={first['metadata']['name']}")
    assert oom_pod["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "OOMKilled"
    grew = [e.user_message for e in h.events(run_id, DagsterEventType.ENGINE_EVENT)
            if "memory_growth" in (e.user_message or "")]
    assert grew == ["Attempt 2 of grows asks for 2048Mi of memory (was 512Mi): the previous attempt was "
                    "OOMKilled (memory_growth)"], grew

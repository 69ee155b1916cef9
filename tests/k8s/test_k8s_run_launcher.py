"""The same executor when runs are launched by dagster-k8s's K8sRunLauncher (the EKS /
Helm setup): the run worker is itself a Job's pod, and it launches the step Jobs."""

from __future__ import annotations

import pytest
from dagster import DagsterEventType, DagsterRunStatus

from ktx_dagster.executors.k8s import sanitize_label_value

from k8s_harness import INSTANCE_YAML, dagster_harness
from k8s_code_location import KEYS, LIMITS, REQUESTS

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def k8s_launcher_harness(ktx_k8s_cluster_module, tmp_path_factory):
    cluster = ktx_k8s_cluster_module
    cluster.require_emulator()  # a real cluster's K8sRunLauncher config is the Helm chart's
    home = tmp_path_factory.mktemp("dagster_home_k8s_launcher")
    instance_yaml = INSTANCE_YAML + f"""\
run_launcher:
  module: dagster_k8s
  class: K8sRunLauncher
  config:
    service_account_name: ktx-step
    instance_config_map: ktx-dagster-instance
    dagster_home: "{home}"
    job_image: ktx-dagster:launcher
    image_pull_policy: Always
    job_namespace: {cluster.namespace}
    load_incluster_config: false
    kubeconfig_file: "{cluster.kubeconfig}"
    env_vars:
      - KTX_STEP_HEALTH_CHECK_SECONDS
      - DAGSTER_STEP_DELEGATING_EXECUTOR_SLEEP_SECONDS
      - PYTHONPATH
"""
    with dagster_harness(cluster, home, instance_yaml=instance_yaml) as h:
        yield h


def test_steps_launched_from_a_run_pod(k8s_launcher_harness):
    from dagster_k8s import K8sRunLauncher

    h = k8s_launcher_harness
    assert isinstance(h.instance.run_launcher, K8sRunLauncher)
    key = KEYS[2]
    run_id = h.launch("square_job", key)
    run = h.wait([run_id], timeout=180)[run_id]
    assert run.status == DagsterRunStatus.SUCCESS, h.debug()

    jobs = h.finished_jobs(f"dagster/run-id={run_id}", 2)
    by_component = {j["metadata"]["labels"]["app.kubernetes.io/component"]: j for j in jobs}
    assert set(by_component) == {"run_worker", "step_worker"}
    run_job, step_job = by_component["run_worker"], by_component["step_worker"]
    assert run_job["spec"]["template"]["spec"]["containers"][0]["args"][:3] == ["dagster", "api", "execute_run"]

    labels = step_job["metadata"]["labels"]
    assert labels["ktx/transformation"] == "emu_square"
    assert labels["ktx/partition"] == sanitize_label_value(key)
    (container,) = step_job["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {"requests": REQUESTS, "limits": LIMITS}
    # the K8sRunLauncher's settings win over our env defaults, as upstream intends
    assert container["image"] == "ktx-dagster:launcher"
    assert container["imagePullPolicy"] == "Always"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DAGSTER_HOME"] == str(h.dagster_home)
    assert env["KTX_DATA_DIR"] == "/mnt/data"
    types = [r.dagster_event.event_type for r in h.events(run_id)]
    assert DagsterEventType.STEP_SUCCESS in types
    starting = h.events(run_id, DagsterEventType.STEP_WORKER_STARTING)[0]
    assert step_job["metadata"]["name"] in starting.user_message

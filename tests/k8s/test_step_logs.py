"""A step pod's stdout and stderr reach the Dagster UI, not only `kubectl logs`.

The stock Helm chart keeps no step logs (dagster-io/dagster#27054): a step pod's
DAGSTER_HOME goes with the pod. Our shipped instance configs put them on storage that the
webserver and the step pods share, and these tests run a step that prints a known line to
stdout and to stderr and then fails, in the emulated cluster, and read both lines back as the
UI does: the run's `LogsCapturedEvent` (GraphQL `logsForRun`) names the log file, then
`capturedLogs(logKey: [runId, "compute_logs", fileKey])` returns its stdout and stderr.

* Minikube: deploy/minikube/dagster.yaml on both sides (the laptop's copy, and the pods'
  ConfigMap from manifests/30-dagster-instance.yaml), a LocalComputeLogManager under
  KTX_COMPUTE_LOGS_DIR: up.sh's env file gives the laptop `<data>/.dagster/compute_logs`, the
  ConfigMap `ktx-instance-env` gives the pods `/mnt/data/.dagster/compute_logs`, the same
  folder through the data mount. PostgreSQL as on Minikube (`ktx_postgres`).
* EKS: the S3ComputeLogManager of deploy/helm/values-eks.yaml, rendered from Terraform-like
  outputs by render_values.py and written into dagster.yaml the way the chart's template does,
  against the moto S3 server. The pods stage their logs in their own /tmp and upload them; the
  reading side has none of those files, so what it shows came from S3.

Emulator only: the test code location is not in the image (on a real cluster, run a
partition and open its logs in the UI).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
import yaml
from dagster import DagsterRunStatus

from k8s_harness import INSTANCE_YAML, REPO_ROOT, dagster_harness, seed_cluster_config
from ktx_dagster.testing.pytest_plugin import k8s_test_cluster
from logs_code_location import STDERR_LINE, STDOUT_LINE

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(300)]

LOCATION = Path(__file__).with_name("logs_code_location.py")
MINIKUBE = REPO_ROOT / "deploy" / "minikube"
HELM = REPO_ROOT / "deploy" / "helm"

RUN_EVENTS = """
query RunEvents($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection { events { __typename ... on LogsCapturedEvent { fileKey stepKeys } } }
  }
}"""
CAPTURED_LOGS = """
query CapturedLogs($logKey: [String!]!) { capturedLogs(logKey: $logKey) { stdout stderr } }"""


def _emulator_only() -> None:
    if os.environ.get("KTX_TEST_KUBECONFIG"):
        pytest.skip("the test code location is not in the image: on a real cluster, open a step's logs in the UI")


def _target():
    from dagster._core.workspace.load_target import PythonFileTarget

    return PythonFileTarget(python_file=str(LOCATION), attribute="defs", working_directory=str(REPO_ROOT),
                            location_name="logs")


def step_logs_in_the_ui(h, run_id: str, step_key: str, timeout: float = 30.0) -> dict[str, str]:
    """stdout/stderr of `step_key` as the UI fetches them, through the workspace's GraphQL.
    Polled: the pod's last bytes may land a moment after the run ends, as in the UI."""
    from dagster_graphql.test.utils import execute_dagster_graphql

    deadline = time.monotonic() + timeout
    while True:
        ctx = h.workspace.create_request_context()
        events = execute_dagster_graphql(ctx, RUN_EVENTS, variables={"runId": run_id}).data["logsForRun"]["events"]
        captured = [e for e in events if e["__typename"] == "LogsCapturedEvent" and step_key in (e["stepKeys"] or [])]
        assert captured, f"no LogsCapturedEvent for {step_key} in run {run_id}: the step pod captured nothing"
        logs = {"stdout": "", "stderr": ""}
        for event in captured:  # one per attempt
            result = execute_dagster_graphql(ctx, CAPTURED_LOGS,
                                             variables={"logKey": [run_id, "compute_logs", event["fileKey"]]})
            assert not result.errors, result.errors
            for stream in logs:
                logs[stream] += result.data["capturedLogs"][stream] or ""
        if (STDOUT_LINE in logs["stdout"] and STDERR_LINE in logs["stderr"]) or time.monotonic() > deadline:
            return logs
        time.sleep(0.5)


def _run_the_failing_step(h) -> str:
    run_id = h.materialize("chatty", "fails")
    run = h.wait([run_id], timeout=180)[run_id]
    assert run.status == DagsterRunStatus.FAILURE, h.debug()
    return run_id


# --------------------------------------------------------------------------- Minikube


def _manifest_configmaps() -> dict[str, dict[str, str]]:
    docs = yaml.safe_load_all((MINIKUBE / "manifests" / "30-dagster-instance.yaml").read_text())
    return {d["metadata"]["name"]: d["data"] for d in docs if d and d.get("kind") == "ConfigMap"}


def laptop_env_from_up_sh(data_dir: Path) -> dict[str, str]:
    """The `export NAME=${DATA_DIR}/...` lines of the env file up.sh writes, for this data dir."""
    script = (MINIKUBE / "up.sh").read_text()
    return {name: value.replace("${DATA_DIR}", str(data_dir))
            for name, value in re.findall(r"^export (\w+)=(\$\{DATA_DIR\}\S*)$", script, flags=re.M)}


@pytest.fixture(scope="module")
def minikube_run(tmp_path_factory, ktx_postgres) -> Iterator[SimpleNamespace]:
    """The failing, printing step run once on Minikube's shipped config; its logs as the UI
    shows them, and every place its PostgreSQL password could have leaked to."""
    _emulator_only()
    tmp = tmp_path_factory.mktemp("minikube-logs")
    pg = ktx_postgres.create_database(f"ktx_{uuid.uuid4().hex[:10]}")
    configmaps = _manifest_configmaps()
    instance_yaml = configmaps["ktx-dagster-instance"]["dagster.yaml"]
    assert instance_yaml == (MINIKUBE / "dagster.yaml").read_text()
    pod_env = {**configmaps["ktx-instance-env"],  # as shipped, but for where PostgreSQL is here
               "DAGSTER_PG_HOST": pg.host, "DAGSTER_PG_PORT": str(pg.port), "DAGSTER_PG_DB": pg.database}
    with k8s_test_cluster(tmp / "cluster", project_dir=REPO_ROOT) as cluster:
        seed_cluster_config(cluster, instance_yaml=instance_yaml, instance_env=pod_env, pg_password=pg.password)
        laptop_env = laptop_env_from_up_sh(cluster.data_dir)
        assert "KTX_COMPUTE_LOGS_DIR" in laptop_env, "up.sh's env file must tell the laptop where step logs are"
        with dagster_harness(cluster, tmp / "home", instance_yaml=instance_yaml, target=_target(),
                             location_name="logs", seed=False,
                             extra_env={**pg.dagster_env(), **laptop_env, "KTX_DEPLOYMENT": "minikube"}) as h:
            run_id = _run_the_failing_step(h)
            yield SimpleNamespace(h=h, cluster=cluster, pg=pg, run_id=run_id, laptop_env=laptop_env,
                                  logs=step_logs_in_the_ui(h, run_id, "chatty"))


@pytest.mark.reliability(
    "pod failure", case="a step pod's logs reach the UI",
    injected="a step on Minikube's config (emulated cluster, PostgreSQL) prints a line to stdout and one to stderr, "
             "then raises",
    seen="the run fails; the UI's capturedLogs for the step (LogsCapturedEvent -> [run, compute_logs, fileKey]) "
         "show both lines, written by the pod under /mnt/data/.dagster/compute_logs and read by the laptop's "
         "webserver from <data>/.dagster/compute_logs; on EKS the same through S3",
    outcome="the failed step's output is in the UI after its pod is gone, not only in `kubectl logs`")
def test_a_step_pods_output_reaches_the_ui_on_minikube(minikube_run):
    logs, run_id = minikube_run.logs, minikube_run.run_id
    assert f"{STDOUT_LINE} [fails]" in logs["stdout"], logs
    assert f"{STDERR_LINE} [fails]" in logs["stderr"], logs
    assert STDERR_LINE not in logs["stdout"] and STDOUT_LINE not in logs["stderr"], logs
    # written by the pod through the data mount, where the laptop reads them
    files = list((Path(minikube_run.laptop_env["KTX_COMPUTE_LOGS_DIR"]) / run_id).rglob("*.out"))
    assert any(STDOUT_LINE in f.read_text() for f in files), files


@pytest.mark.reliability(
    "security", case="no credentials in logs or Dagster metadata",
    injected="the PostgreSQL password that the step pods get from the ktx-postgres Secret, searched for after a "
             "failed step on Minikube's config",
    seen="it is in none of: the run's event log (every event, serialized), the UI's captured stdout/stderr, the "
         "step pod's log, the Job and Pod specs (only a secretKeyRef)",
    outcome="a step, the executor or Dagster writing the password anywhere the UI or kubectl shows fails the test")
def test_no_credentials_in_logs_or_metadata(minikube_run):
    from dagster._serdes import serialize_value

    secret, run_id, cluster = minikube_run.pg.password, minikube_run.run_id, minikube_run.cluster
    assert len(secret) >= 16
    places = {
        "event log": "\n".join(serialize_value(r) for r in minikube_run.h.instance.all_logs(run_id)),
        "captured logs": minikube_run.logs["stdout"] + minikube_run.logs["stderr"],
        "pod logs": "\n".join(cluster.pod_log(p["metadata"]["name"])
                              for p in cluster.pods(label_selector=f"dagster/run-id={run_id}")),
        "job and pod specs": json.dumps([cluster.jobs(label_selector=f"dagster/run-id={run_id}"),
                                         cluster.pods(label_selector=f"dagster/run-id={run_id}")]),
    }
    assert all(places.values()), [k for k, v in places.items() if not v]  # each place holds something
    assert "secretKeyRef" in places["job and pod specs"]
    leaked = [place for place, text in places.items() if secret in text]
    assert leaked == [], f"the PostgreSQL password is in: {leaked}"


# --------------------------------------------------------------------------- EKS (S3)


def chart_compute_logs(values: dict) -> dict:
    """The `compute_logs` block the Dagster chart writes into dagster.yaml from
    `computeLogManager` (templates/helpers/instance/_compute-log-manager.tpl: camelCase
    values -> the S3ComputeLogManager's snake_case config)."""
    assert values["computeLogManager"]["type"] == "S3ComputeLogManager"
    config = values["computeLogManager"]["config"]["s3ComputeLogManager"]
    return {"module": "dagster_aws.s3.compute_log_manager", "class": "S3ComputeLogManager",
            "config": {re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), k): v for k, v in config.items()}}


def rendered_values(tmp_path: Path, bucket: str) -> dict:
    outputs = {"region": "us-east-1", "data_dir": f"s3://{bucket}/ktx", "ecr_repository_url": "1.dkr.ecr.x/ktx",
               "pod_role_arn": "arn:aws:iam::1:role/pods", "dagster_db_host": "db"}
    (tmp_path / "outputs.json").write_text(json.dumps({k: {"value": v} for k, v in outputs.items()}))
    subprocess.run([sys.executable, str(HELM / "render_values.py"), "--outputs", str(tmp_path / "outputs.json"),
                    "--tag", "t", "--out", str(tmp_path / "eks")], check=True, capture_output=True)
    return yaml.safe_load((tmp_path / "eks" / "values-eks.yaml").read_text())


@pytest.mark.s3
@pytest.mark.reliability(
    "pod failure", case="a step pod's logs reach the UI on EKS (S3)",
    injected="the same printing, failing step with the Helm values' S3ComputeLogManager (rendered from Terraform "
             "outputs, as the chart writes dagster.yaml) against moto's S3 server",
    seen="the UI's capturedLogs show both lines, read from s3://<data bucket>/dagster-compute-logs/<run>/...; "
         "the pod's staged copy in its /tmp is not visible to the reader",
    outcome="step logs survive the pod on EKS; S3 access from the environment (a Secret here, the pod role on EKS)")
def test_a_step_pods_output_reaches_the_ui_through_s3(tmp_path, s3_endpoint):
    _emulator_only()
    bucket = f"ktx-logs-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    compute_logs = chart_compute_logs(rendered_values(tmp_path, bucket))
    assert compute_logs["config"]["bucket"] == bucket
    # On EKS the endpoint is AWS's and /tmp the staging dir; here moto, and a staging dir per
    # side (env), so the reader cannot see the pod's local copy.
    compute_logs["config"].update({"endpoint_url": s3_endpoint, "local_dir": {"env": "KTX_TEST_LOG_STAGING"}})
    instance_yaml = INSTANCE_YAML + yaml.safe_dump({"compute_logs": compute_logs})
    with k8s_test_cluster(tmp_path / "cluster", project_dir=REPO_ROOT) as cluster:
        seed_cluster_config(cluster)
        # S3 credentials reach the pods only as a Kubernetes Secret (envFrom), never in the spec.
        # (moto's credentials, from this process's environment as the s3_endpoint fixture set it)
        aws = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
        cluster.apply("secrets", {"metadata": {"name": "ktx-aws"}, "stringData": aws})
        env = {"KTX_DEPLOYMENT": "minikube", "KTX_ENV_SECRETS": "ktx-aws",  # pragma: allowlist secret
               "KTX_POD_ENV": "KTX_TEST_LOG_STAGING=/tmp/compute-logs",
               "KTX_TEST_LOG_STAGING": str(tmp_path / "webserver-staging")}
        with dagster_harness(cluster, tmp_path / "home", instance_yaml=instance_yaml, target=_target(),
                             location_name="logs", seed=False, extra_env=env) as h:
            run_id = _run_the_failing_step(h)
            logs = step_logs_in_the_ui(h, run_id, "chatty")
            (job,) = cluster.jobs(label_selector=f"dagster/run-id={run_id}")
            container = job["spec"]["template"]["spec"]["containers"][0]
            assert {"secretRef": {"name": "ktx-aws"}} in container["envFrom"]
            assert not any(e["name"].startswith("AWS_") for e in container.get("env") or [])
    assert f"{STDOUT_LINE} [fails]" in logs["stdout"], logs
    assert f"{STDERR_LINE} [fails]" in logs["stderr"], logs
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
            .list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert any(k.startswith("dagster-compute-logs/") and f"/{run_id}/" in k and k.endswith(".out") for k in keys), keys

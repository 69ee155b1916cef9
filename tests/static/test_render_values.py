"""deploy/helm/render_values.py: the EKS Helm values from Terraform's outputs, no `sed`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "helm" / "render_values.py"
pytestmark = pytest.mark.static

OUTPUTS = {  # `terraform output -json` as Terraform writes it
    "region": {"value": "eu-west-1", "type": "string", "sensitive": False},
    "data_dir": {"value": "s3://ktx-data-123/ktx", "type": "string", "sensitive": False},
    "data_bucket": {"value": "ktx-data-123", "type": "string", "sensitive": False},
    "ecr_repository_url": {"value": "123.dkr.ecr.eu-west-1.amazonaws.com/ktx-dagster", "type": "string", "sensitive": False},
    "pod_role_arn": {"value": "arn:aws:iam::123:role/ktx-dagster-pods", "type": "string", "sensitive": False},
    "dagster_db_host": {"value": "ktx-dagster.abc.eu-west-1.rds.amazonaws.com", "type": "string", "sensitive": False},
    "dagster_db_password": {"value": "never-in-values", "type": "string", "sensitive": True},
}


def _render(tmp_path, outputs=OUTPUTS):
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    return subprocess.run([sys.executable, str(SCRIPT), "--outputs", str(tmp_path / "outputs.json"), "--tag", "abc1234",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=60)


def test_every_placeholder_is_filled_field_by_field(tmp_path):
    proc = _render(tmp_path)
    assert proc.returncode == 0, proc.stderr
    values = yaml.safe_load((tmp_path / "out" / "values-eks.yaml").read_text())
    text = json.dumps(values)
    for placeholder in ("ACCOUNT_ID", "BUCKET", "RDS_HOST", '"TAG"', "REGION.amazonaws"):
        assert placeholder not in text, placeholder
    assert "never-in-values" not in text  # the password goes to a Secret only
    assert values["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"] == "arn:aws:iam::123:role/ktx-dagster-pods"
    assert values["postgresql"]["postgresqlHost"] == "ktx-dagster.abc.eu-west-1.rds.amazonaws.com"
    # step logs (tests/k8s/test_step_logs.py runs them through S3): the data bucket, own prefix
    logs = values["computeLogManager"]
    assert logs["type"] == "S3ComputeLogManager"
    assert logs["config"]["s3ComputeLogManager"] == {**logs["config"]["s3ComputeLogManager"], "bucket": "ktx-data-123",
                                                     "region": "eu-west-1", "prefix": "dagster-compute-logs"}
    for deployment in values["dagster-user-deployments"]["deployments"]:
        assert deployment["image"] == {**deployment["image"], "repository": OUTPUTS["ecr_repository_url"]["value"],
                                       "tag": "abc1234"}
        env = {e["name"]: e["value"] for e in deployment["env"]}
        assert env["KTX_DATA_DIR"] == "s3://ktx-data-123/ktx"
        assert env["KTX_IMAGE"] == "123.dkr.ecr.eu-west-1.amazonaws.com/ktx-dagster:abc1234"
        assert env["AWS_REGION"] == "eu-west-1"  # the variable's name untouched (sed rewrote it)
        assert env["KTX_SERVICE_ACCOUNT"] == "ktx-step"
    sa = yaml.safe_load((tmp_path / "out" / "step-serviceaccount.yaml").read_text())
    assert sa["metadata"]["name"] == "ktx-step" and sa["automountServiceAccountToken"] is False
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == OUTPUTS["pod_role_arn"]["value"]


def test_missing_outputs_are_named(tmp_path):
    proc = _render(tmp_path, {k: v for k, v in OUTPUTS.items() if k != "dagster_db_host"})
    assert proc.returncode != 0 and "terraform outputs lack dagster_db_host" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_the_step_service_account_may_assume_the_pod_role():
    variables = (REPO / "terraform" / "variables.tf").read_text()
    assert '"ktx-step"' in variables.split('variable "dagster_service_accounts"', 1)[1].split("}", 1)[0]


def test_a_data_dir_that_is_not_s3_is_named(tmp_path):
    proc = _render(tmp_path, {**OUTPUTS, "data_dir": {"value": "/mnt/data", "type": "string", "sensitive": False}})
    assert proc.returncode != 0 and "data_dir='/mnt/data' is not s3://bucket/prefix" in proc.stderr

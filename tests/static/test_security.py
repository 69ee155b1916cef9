"""No credentials in the repository, and every Kubernetes manifest we ship or generate is
valid for every Kubernetes version EKS supports today.

- detect-secrets (checkov's maintained fork, in .venv-tools) scans every file git tracks or
  would track; `.secrets.baseline` lists the false positives it knows (a Secret's *name*, a
  `password = random_password...` reference, the emulator's dummy token), reviewed by hand.
- kubernetes-validate checks, strictly (no unknown fields), the Minikube manifests, the step
  Jobs the executor renders for Minikube and EKS, and the EKS step service account, against
  the schemas of each version in terraform/eks_versions.json still supported today.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("KTX_TOOLS_BIN", REPO / ".venv-tools" / "bin"))
pytestmark = pytest.mark.static


def _tool(name: str) -> Path:
    path = TOOLS / name
    if not path.exists():
        if os.environ.get("KTX_REQUIRE_STATIC_TOOLS") == "1":
            pytest.fail(f"{path} missing: make tools")
        pytest.skip(f"{path} missing (make tools)")
    return path


def _scan(files: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    baseline = tmp_path / "baseline.json"  # the hook rewrites its baseline: never the tracked one
    shutil.copy(REPO / ".secrets.baseline", baseline)
    for _ in range(2):
        proc = subprocess.run([str(_tool("detect-secrets-hook")), "--baseline", str(baseline), *files],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
        # A known false positive that moved to another line only updates the baseline copy:
        # scan again with it; a new secret fails both times.
        if "The baseline file was updated" not in proc.stdout + proc.stderr:
            break
    return proc


@pytest.mark.reliability(
    "security", case="a credential committed to the repository",
    injected="detect-secrets (Bridgecrew's fork, installed with checkov) over every file git tracks or would track, "
             "against the hand-reviewed false positives of .secrets.baseline",
    seen="the scan passes; a finding is named by secret type and file:line (\"Secret Type: AWS Access Key / "
         "Location: settings.py:1\") with how to mark a false positive",
    outcome="a new secret in any file fails the test; a known false positive that only moved to another line does not")
def test_no_credentials_in_the_repository(tmp_path):
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    files = [f for f in files if (REPO / f).is_file() and f != ".secrets.baseline"]
    proc = _scan(files, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.reliability(
    "security", case="the secret scan catches a planted key",
    injected="a file assigning an AWS secret access key, scanned with the repository's baseline and plugins",
    seen="detect-secrets-hook exits 1 and reports \"AWS Access Key\" at settings.py:1",
    outcome="a scan that stopped finding keys (its AWS plugin dropped from the baseline, the file filtered out) fails "
            "the test")
def test_the_scan_catches_a_planted_key(tmp_path):
    leak = tmp_path / "settings.py"
    leak.write_text('aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"\n')  # pragma: allowlist secret
    proc = _scan([str(leak)], tmp_path)
    assert proc.returncode == 1 and "AWS Access Key" in proc.stdout + proc.stderr


def _supported_versions() -> list[str]:
    table = json.loads((REPO / "terraform" / "eks_versions.json").read_text())["versions"]
    today = datetime.date.today()
    return [v for v, d in table.items() if datetime.date.fromisoformat(d["end_of_extended_support"]) > today]


def _manifests(tmp_path: Path) -> list[Path]:
    sys.path.insert(0, str(REPO))
    from ktx_dagster.executors.k8s import K8sSettings, render_step_job

    config = {"container_config": {"resources": {"requests": {"cpu": "200m", "memory": "250Mi"},
                                                 "limits": {"cpu": "200m", "memory": "275Mi"}}}}
    out = sorted((REPO / "deploy" / "minikube" / "manifests").glob("*.yaml"))
    eks = K8sSettings.from_env("eks", env={"KTX_DATA_DIR": "s3://bucket/ktx",
                                           "KTX_IMAGE": "123456789012.dkr.ecr.us-east-1.amazonaws.com/ktx-dagster:1"})
    for name, settings in (("minikube", K8sSettings.from_env("minikube", env={})), ("eks", eks)):
        job = render_step_job(settings, transformation="hello_world", partition="part_1",
                              k8s_config={**config, "pod_spec_config": {"tolerations": [
                                  {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}})
        path = tmp_path / f"step-job-{name}.yaml"
        path.write_text(yaml.safe_dump(job))
        out.append(path)
    outputs = {k: {"value": v} for k, v in {
        "region": "eu-west-1", "data_dir": "s3://b/ktx", "ecr_repository_url": "1.dkr.ecr.eu-west-1.amazonaws.com/k",
        "pod_role_arn": "arn:aws:iam::1:role/r", "dagster_db_host": "db"}.items()}
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    subprocess.run([sys.executable, str(REPO / "deploy" / "helm" / "render_values.py"), "--outputs",
                    str(tmp_path / "outputs.json"), "--tag", "t", "--out", str(tmp_path / "eks")], check=True)
    out.append(tmp_path / "eks" / "step-serviceaccount.yaml")
    return out


# One test over the versions, not one per version: the supported set follows today's date,
# and the report (docs/reliability.md) lists a parametrized test's ids.
@pytest.mark.reliability(
    "security", case="a manifest invalid for a Kubernetes version EKS supports",
    injected="the Minikube manifests, the step Jobs the executor renders for Minikube and EKS and the EKS step "
             "service account, validated by kubernetes-validate --strict (no unknown fields) against each version "
             "of terraform/eks_versions.json whose extended support has not ended",
    seen="every file validates for every such version; a failure names the version, the file, the resource and the "
         "field (\"did not validate for resource job/x against version 1.35: ... ('limit' was unexpected)\")",
    outcome="a misspelt, removed or too-new field fails the test before any cluster sees the manifest; a table with "
            "no supported version left fails it too")
def test_every_manifest_validates_for_each_supported_kubernetes(tmp_path):
    versions = _supported_versions()
    assert versions, "no version of terraform/eks_versions.json is still supported: update the table"
    files = _manifests(tmp_path)
    assert len(files) >= 7
    failures = {}
    for version in versions:
        proc = subprocess.run([str(_tool("kubernetes-validate")), "--strict", "--quiet", "-k", f"{version}.0",
                               *map(str, files)], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            failures[version] = proc.stdout + proc.stderr
    assert not failures, "\n".join(f"Kubernetes {v}:\n{out}" for v, out in failures.items())


@pytest.mark.reliability(
    "security", case="the schema validation catches a wrong field",
    injected="a Job whose container sets resources.limit (instead of limits), validated strictly for Kubernetes 1.35",
    seen="kubernetes-validate exits non-zero: \"spec.template.spec.containers.0.resources: Additional properties are "
         "not allowed ('limit' was unexpected)\"",
    outcome="a validation that stopped rejecting unknown fields (--strict lost, the schemas missing) fails the test")
def test_the_validator_catches_a_wrong_field(tmp_path):
    bad = tmp_path / "job.yaml"
    bad.write_text(yaml.safe_dump({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"}, "spec": {
        "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "c", "image": "i", "resources": {"limit": {"memory": "1Gi"}}}]}}}}))
    proc = subprocess.run([str(_tool("kubernetes-validate")), "--strict", "--quiet", "-k", "1.35.0", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "limit" in proc.stdout + proc.stderr

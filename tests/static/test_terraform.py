"""terraform/ parses (python-hcl2), is laid out as `terraform fmt` leaves it, and says what the
deployment relies on."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest

from tests.static import hcl_fmt

REPO = Path(__file__).resolve().parents[2]
TF = REPO / "terraform"

pytestmark = pytest.mark.static


def _clean(value):
    """python-hcl2 >= 7 keeps string quotes and marks blocks; normalise across versions."""
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _one(value):
    return value[0] if isinstance(value, list) else value


@pytest.fixture(scope="module")
def tf() -> dict:
    merged: dict = {}
    files = sorted(TF.glob("*.tf"))
    assert files
    for path in files:
        with path.open() as f:
            parsed = _clean(hcl2.load(f))
        for block, items in parsed.items():
            merged.setdefault(block, []).extend(items if isinstance(items, list) else [items])
    return merged


def _blocks(tf: dict, kind: str, type_: str) -> dict:
    out = {}
    for item in tf.get(kind, []):
        for t, named in item.items():
            if t.strip('"') == type_:
                for name, body in named.items():
                    out[name.strip('"')] = body
    return out


def _text(value) -> str:
    return json.dumps(value)


def test_modules_are_the_community_ones_pinned(tf):
    modules = {name.strip('"'): body for item in tf["module"] for name, body in item.items()}
    assert modules["vpc"]["source"] == "terraform-aws-modules/vpc/aws"
    assert modules["eks"]["source"] == "terraform-aws-modules/eks/aws"
    assert all(m.get("version") for m in modules.values())
    compute = _one(modules["eks"]["cluster_compute_config"])
    assert compute["enabled"] is True  # EKS Auto Mode


def test_bucket_is_encrypted_versioned_private_and_tls_only(tf):
    assert _one(_blocks(tf, "resource", "aws_s3_bucket_versioning")["data"]["versioning_configuration"])["status"] == "Enabled"
    sse = _text(_blocks(tf, "resource", "aws_s3_bucket_server_side_encryption_configuration")["data"])
    assert "aws:kms" in sse
    pab = _blocks(tf, "resource", "aws_s3_bucket_public_access_block")["data"]
    for key in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
        assert pab[key] is True
    policy = _text(_blocks(tf, "data", "aws_iam_policy_document")["data_bucket"])
    assert "aws:SecureTransport" in policy and '"Deny"' in policy


def test_ecr_is_immutable_scanned_encrypted(tf):
    repo = _blocks(tf, "resource", "aws_ecr_repository")["ktx"]
    assert repo["image_tag_mutability"] == "IMMUTABLE"
    assert _one(repo["image_scanning_configuration"])["scan_on_push"] is True
    assert _one(repo["encryption_configuration"])["encryption_type"] == "KMS"


def test_pod_role_is_scoped_to_the_bucket(tf):
    code = "".join(
        line for p in TF.glob("*.tf") for line in p.read_text().splitlines(True) if not line.lstrip().startswith("#")
    )
    assert "AdministratorAccess" not in code and "iam::aws:policy" not in code
    text = code
    assert "aws_access_key" not in text.lower()
    policy = _blocks(tf, "data", "aws_iam_policy_document")["pods_data"]
    statements = policy["statement"] if isinstance(policy["statement"], list) else [policy["statement"]]
    for statement in statements:
        resources = _text(statement["resources"])
        assert '"*"' not in resources
        assert "aws_s3_bucket.data.arn" in resources or "aws_kms_key.ktx.arn" in resources
    trust = _text(_blocks(tf, "data", "aws_iam_policy_document")["pod_trust"])
    assert "AssumeRoleWithWebIdentity" in trust and "system:serviceaccount" in trust


def test_variables_and_outputs(tf):
    variables = {name.strip('"') for item in tf["variable"] for name in item}
    assert {"region", "name", "bucket_name"} <= variables
    outputs = {name.strip('"') for item in tf["output"] for name in item}
    assert {"data_bucket", "ecr_repository_url", "pod_role_arn", "kubeconfig_command"} <= outputs


def test_terraform_files_are_in_fmt_layout():
    """terraform fmt's layout without the binary (tests/static/hcl_fmt.py: its indentation,
    alignment and spacing rules, and what it checks less or more than fmt)."""
    files = sorted(TF.glob("*.tf"))
    assert files
    problems = [str(p) for path in files for p in hcl_fmt.check_file(path)]
    assert problems == [], "terraform fmt would rewrite these lines:\n" + "\n".join(problems)


def test_terraform_fmt_when_available():
    terraform = shutil.which("terraform")
    if not terraform:
        pytest.skip("terraform binary not installed; its layout rules are checked without it by "
                    "test_terraform_files_are_in_fmt_layout (tests/static/hcl_fmt.py)")
    result = subprocess.run([terraform, "fmt", "-check", "-recursive", str(TF)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_version_is_in_standard_support_today(tf):
    """The default EKS version against the date-stamped table (terraform/eks_versions.json):
    past its end of standard support, EKS bills extended support and then upgrades it."""
    import datetime

    table = json.loads((TF / "eks_versions.json").read_text())
    version = next(item["kubernetes_version"]["default"] for item in tf["variable"] if "kubernetes_version" in item)
    assert version in table["versions"], f"{version} is not in terraform/eks_versions.json"
    end = datetime.date.fromisoformat(table["versions"][version]["end_of_standard_support"])
    today = datetime.date.today()
    assert today < end, (f"EKS {version} left standard support on {end}: raise kubernetes_version to a newer one "
                         f"in standard support, after updating eks_versions.json (checked {table['checked']})")


def test_postgres_is_private_encrypted_and_reachable_from_the_cluster_only(tf):
    db = _blocks(tf, "resource", "aws_db_instance")["dagster"]
    assert db["publicly_accessible"] is False and db["storage_encrypted"] is True
    assert db["engine"] == "postgres" and "random_password.dagster_db.result" in _text(db["password"])
    ingress = _blocks(tf, "resource", "aws_vpc_security_group_ingress_rule")
    assert list(ingress) == ["dagster_db_from_cluster"]
    rule = ingress["dagster_db_from_cluster"]
    assert "module.eks.cluster_primary_security_group_id" in _text(rule["referenced_security_group_id"])
    assert rule["from_port"] == rule["to_port"] == 5432 and "cidr_ipv4" not in rule
    outputs = {name.strip('"'): body for item in tf["output"] for name, body in item.items()}
    assert outputs["dagster_db_password"]["sensitive"] is True


def test_destroy_empties_the_bucket_and_the_repository(tf):
    assert _blocks(tf, "resource", "aws_s3_bucket")["data"]["force_destroy"] is True
    assert _blocks(tf, "resource", "aws_ecr_repository")["ktx"]["force_delete"] is True

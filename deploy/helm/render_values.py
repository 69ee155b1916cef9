"""The Helm values and the step service account for EKS, from Terraform's outputs.

    terraform -chdir=terraform output -json > .eks/outputs.json
    python deploy/helm/render_values.py --outputs .eks/outputs.json --tag TAG --out .eks

deploy/helm/values-eks.yaml is the template (its ACCOUNT_ID / REGION / BUCKET / TAG / RDS_HOST
placeholders document what changes); this fills every one of them from the outputs, field by
field (no text substitution: `AWS_REGION` stays `AWS_REGION`), refuses to write a file that
still holds a placeholder, and writes the `ktx-step` service account the step pods run as
(annotated with the pod role, no API token). `make eks-deploy` runs it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).with_name("values-eks.yaml")
PLACEHOLDERS = re.compile(r"\b(ACCOUNT_ID|REGION|BUCKET|TAG|RDS_HOST)\b")
STEP_SERVICE_ACCOUNT = "ktx-step"
REQUIRED = ("region", "data_dir", "ecr_repository_url", "pod_role_arn", "dagster_db_host")


def outputs_from(text: str) -> dict[str, Any]:
    """`terraform output -json` -> name: value (refusing outputs that are missing)."""
    raw = json.loads(text)
    values = {name: item["value"] if isinstance(item, dict) and "value" in item else item for name, item in raw.items()}
    missing = [name for name in REQUIRED if not values.get(name)]
    if missing:
        raise SystemExit(f"terraform outputs lack {', '.join(missing)}: run make eks-infra (terraform apply) first")
    return values


def bucket_of(data_dir: str) -> str:
    """`s3://bucket/prefix` -> `bucket` (the data_dir output names the data bucket)."""
    match = re.fullmatch(r"s3://([^/]+)(/.*)?", data_dir)
    if not match:
        raise SystemExit(f"terraform output data_dir={data_dir!r} is not s3://bucket/prefix: check terraform/outputs.tf")
    return match.group(1)


def _set_env(env: list[dict[str, Any]], name: str, value: str) -> None:
    for item in env:
        if item["name"] == name:
            item["value"] = value
            return
    env.append({"name": name, "value": value})


def render(template: dict[str, Any], outputs: dict[str, Any], tag: str) -> dict[str, Any]:
    values = json.loads(json.dumps(template))  # a deep copy; anchors are expanded already
    repository = outputs["ecr_repository_url"]
    values["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"] = outputs["pod_role_arn"]
    values["postgresql"]["postgresqlHost"] = outputs["dagster_db_host"]
    s3_logs = values["computeLogManager"]["config"]["s3ComputeLogManager"]
    s3_logs["bucket"] = bucket_of(outputs["data_dir"])  # step logs: the data bucket, own prefix
    s3_logs["region"] = outputs["region"]
    for deployment in values["dagster-user-deployments"]["deployments"]:
        deployment["image"]["repository"] = repository
        deployment["image"]["tag"] = tag
        env = deployment["env"]
        _set_env(env, "KTX_DATA_DIR", outputs["data_dir"])
        _set_env(env, "KTX_IMAGE", f"{repository}:{tag}")
        _set_env(env, "AWS_REGION", outputs["region"])
        _set_env(env, "KTX_SERVICE_ACCOUNT", STEP_SERVICE_ACCOUNT)
    left = sorted(set(PLACEHOLDERS.findall(json.dumps(values))))
    if left:
        raise SystemExit(f"{TEMPLATE}: placeholders left after rendering: {', '.join(left)}")
    return values


def step_service_account(outputs: dict[str, Any], namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": STEP_SERVICE_ACCOUNT,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "ktx-dagster"},
            # IRSA: the pod role (S3 data bucket only); the webhook projects its own token
            "annotations": {"eks.amazonaws.com/role-arn": outputs["pod_role_arn"]},
        },
        "automountServiceAccountToken": False,  # steps never call the Kubernetes API
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outputs", required=True, help="terraform output -json (a file, or - for stdin)")
    parser.add_argument("--tag", required=True, help="the image tag pushed to ECR")
    parser.add_argument("--out", required=True, help="folder for values-eks.yaml and step-serviceaccount.yaml")
    parser.add_argument("--namespace", default="dagster")
    args = parser.parse_args(argv)
    text = sys.stdin.read() if args.outputs == "-" else Path(args.outputs).read_text()
    outputs = outputs_from(text)
    values = render(yaml.safe_load(TEMPLATE.read_text()), outputs, args.tag)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "values-eks.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    (out / "step-serviceaccount.yaml").write_text(yaml.safe_dump(step_service_account(outputs, args.namespace),
                                                                 sort_keys=False))
    print(f"wrote {out / 'values-eks.yaml'} and {out / 'step-serviceaccount.yaml'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

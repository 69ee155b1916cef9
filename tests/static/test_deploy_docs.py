"""The README's "Run on Minikube" / "Run on EKS" say what the scripts and files really do,
and the shared instance config works with the PostgreSQL driver that is installed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
UP_SH = REPO / "deploy" / "minikube" / "up.sh"
DOWN_SH = REPO / "deploy" / "minikube" / "down.sh"
TF_README = REPO / "terraform" / "README.md"
VALUES_EKS = REPO / "deploy" / "helm" / "values-eks.yaml"
MINIKUBE_YAML = REPO / "deploy" / "minikube" / "dagster.yaml"
MAKEFILE = REPO / "Makefile"

pytestmark = pytest.mark.static


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def commands(text: str) -> list[str]:
    """Lines of the bash blocks without comments and continuation joins."""
    out = []
    for block in bash_blocks(text):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"(^|\s+)#\s.*$", "", line).strip()
            if line:
                out.append(re.sub(r"\s+", " ", line))
    return out


def up_sh_instructions() -> list[str]:
    """What up.sh prints at the end, with its defaults and <repo> for the checkout."""
    script = UP_SH.read_text()
    values = {"REPO_ROOT": "<repo>"}
    for name, var, default in re.findall(r'^(\w+)="\$\{(\w+):-(.*)\}"$', script, flags=re.M):
        values[name] = default
    values.update({k: v for k, v in re.findall(r'^(\w+)="([^"$]*)"', script, flags=re.M)})

    def render(text: str) -> str:
        for _ in range(3):
            text = re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)
        return text.replace("\\$", "$")

    values = {k: render(v) for k, v in values.items()}
    body = script.split("cat <<INSTRUCTIONS\n", 1)[1].split("\nINSTRUCTIONS", 1)[0]
    lines = []
    for line in render(body).splitlines():
        if line.startswith("  "):
            lines.append(line.strip())
        elif ":  " in line:  # "Watch the steps:  kubectl ..."
            lines.append(line.split(":  ", 1)[1].strip())
    assert "make minikube-dev" in lines and len(lines) >= 3, lines  # the parse found the block
    return lines


def test_minikube_section_shows_exactly_what_up_sh_prints():
    text = section("Run on Minikube")
    flat = re.sub(r"\s+", " ", text)
    for line in up_sh_instructions():
        assert re.sub(r"\s+", " ", line) in flat, f"README 'Run on Minikube' lacks: {line}"


def test_minikube_section_calls_the_scripts_as_they_accept():
    text = section("Run on Minikube")
    assert "make minikube-up" in commands(text)
    makefile = (REPO / "Makefile").read_text()
    for target, script in (("minikube-up", "deploy/minikube/up.sh"), ("minikube-dev", "deploy/minikube/dev.sh"),
                           ("minikube-down", "deploy/minikube/down.sh")):
        assert re.search(rf"^{target}:.*\n\t{re.escape(script)}$", makefile, flags=re.M), target
    accepted = {"", "--delete"}  # down.sh's case
    down_calls = [c for c in commands(text) if c.startswith("deploy/minikube/down.sh")]
    assert down_calls
    for call in down_calls:
        assert call.removeprefix("deploy/minikube/down.sh").strip() in accepted, call
    assert '"--delete")' not in DOWN_SH.read_text()  # guard the parse below
    assert re.search(r"^\s+--delete\)$", DOWN_SH.read_text(), flags=re.M)
    assert "kubectl --context ktx -n ktx get jobs -l ktx/transformation=hello_world" in commands(text)
    # the test settings named in the README are the ones the k8s harness reads
    harness = (REPO / "tests" / "k8s" / "k8s_harness.py").read_text()
    plugin = (REPO / "ktx_dagster" / "testing" / "pytest_plugin.py").read_text()
    for var in set(re.findall(r"\bKTX_TEST_\w+", text)):
        assert var in harness or var in plugin, var


def test_eks_section_matches_terraform_readme_and_outputs():
    text = section("Run on EKS")
    assert "(terraform/README.md)" in text and TF_README.exists()
    tf_commands = set(commands(TF_README.read_text()))
    for cmd in commands(text):
        assert cmd in tf_commands, f"README 'Run on EKS' command not in terraform/README.md: {cmd}"
    outputs = set(re.findall(r'^output "(\w+)"', (REPO / "terraform" / "outputs.tf").read_text(), flags=re.M))
    used = set(re.findall(r"output (?:-raw |-json)(\w*)", text + TF_README.read_text() + MAKEFILE.read_text()))
    used.discard("")
    assert used and used <= outputs, used - outputs
    values = VALUES_EKS.read_text()
    for placeholder in ("ACCOUNT_ID.dkr.ecr.REGION.amazonaws.com/ktx-dagster",
                        "arn:aws:iam::ACCOUNT_ID:role/ktx-dagster-pods", "BUCKET", "TAG", "REGION", "RDS_HOST"):
        assert placeholder in values, placeholder


def _target(name: str) -> str:
    match = re.search(rf"^{name}:.*\n((?:\t.*\n|\t.*\\\n)+)", MAKEFILE.read_text(), flags=re.M)
    assert match, f"Makefile has no target {name}"
    return match.group(1)


def test_eks_targets_are_what_the_docs_promise():
    for target in ("eks-infra", "eks-image", "eks-deploy", "eks-destroy"):
        assert f"make {target}" in section("Run on EKS"), target
    deploy, infra, destroy = _target("eks-deploy"), _target("eks-infra"), _target("eks-destroy")
    assert "render_values.py" in deploy and "sed " not in MAKEFILE.read_text()
    # the chart is the dagster version this repository tests with
    pinned = re.search(r"^DAGSTER_CHART_VERSION := (\S+)$", MAKEFILE.read_text(), flags=re.M).group(1)
    constraints = (REPO / ".ci" / "constraints.txt").read_text()
    assert f"dagster=={pinned}\n" in constraints
    assert "--version $(DAGSTER_CHART_VERSION)" in deploy
    # the region is chosen once, in a file every apply and destroy reads
    assert "region.auto.tfvars" in infra and "-var region" not in infra + destroy
    assert "/terraform/region.auto.tfvars" in (REPO / ".gitignore").read_text()
    # the password goes from Terraform's sensitive output straight into a Secret
    assert "output -raw dagster_db_password | kubectl -n dagster create secret generic dagster-postgresql-secret" in deploy
    # the chart names the webserver service `dagster-webserver` (release "dagster")
    assert "svc/dagster-webserver " in deploy and "dagster-dagster-webserver" not in TF_README.read_text()


def _engine_for(postgres_db: dict):
    from dagster_postgres.utils import get_conn_string
    from sqlalchemy import create_engine

    engine = create_engine(get_conn_string(**postgres_db))  # imports the DB-API driver; no connection
    engine.dispose()
    return engine


def test_instance_configs_name_an_installed_postgres_driver():
    """SQLAlchemy >= 2.1 maps plain postgresql:// to psycopg (v3); dagster-postgres installs
    psycopg2. The Minikube instance and the Helm values name the driver explicitly."""
    db = yaml.safe_load(MINIKUBE_YAML.read_text())["storage"]["postgres"]["postgres_db"]
    assert db["scheme"] == "postgresql+psycopg2"
    resolved = {k: ("x" if isinstance(v, dict) else v) for k, v in db.items()}
    resolved["port"] = "5432"
    assert _engine_for(resolved).dialect.driver == "psycopg2"
    helm = yaml.safe_load(VALUES_EKS.read_text())["postgresql"]
    assert helm["postgresqlScheme"] == "postgresql+psycopg2"
    assert _engine_for({"username": "u", "password": "p", "hostname": "h", "db_name": "d",
                        "scheme": helm["postgresqlScheme"]}).dialect.driver == "psycopg2"

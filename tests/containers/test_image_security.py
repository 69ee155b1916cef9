"""The image, from a security angle: it holds no credentials, and a code server runs in it
exactly as hardened as deploy/helm/values-eks.yaml asks (the run pods and step pods of the
same image are covered by tests/containers/test_image.py and the container-pod tests).

* No credentials: the image's env, labels and build history carry no secret value, and its
  filesystem holds no credential file (~/.aws/credentials, .pgpass, .netrc, kubeconfig, SSH
  keys, docker or git credentials). A derived image with a planted key is caught.
* The EKS code server: `dagster api grpc` for each code location, as the chart starts it, with
  the values' securityContext (uid, read-only root, capabilities, no escalation), volumes
  (an emptyDir at /tmp) and env (KTX_DEPLOYMENT=eks, HOME=/tmp), answers a health check and
  lists its repository.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from pathlib import Path

import pytest
import yaml

from ktx_dagster.testing.containers import require_image, run
from ktx_dagster.testing.s3 import free_port

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("KTX_TEST_IMAGE_TAG", "ktx-dagster:test")
VALUES_EKS = REPO / "deploy" / "helm" / "values-eks.yaml"
SECRET_ASSIGNMENT = re.compile(r"\b\w*(PASSWORD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY|API_KEY)\w*=(?!\s|$)\S+", re.I)
AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
CREDENTIAL_FILES = ("credentials", ".pgpass", ".netrc", ".git-credentials", "id_rsa", "id_ed25519", "config.json",
                    ".dockercfg", "kubeconfig", ".env")

pytestmark = pytest.mark.container


@pytest.fixture(scope="module")
def image() -> str:
    return require_image(IMAGE)


def credential_findings(image: str) -> list[str]:
    """Where `image` holds something that looks like a credential (empty: nothing)."""
    config = json.loads(run(["image", "inspect", image]).stdout)[0]["Config"]
    history = run(["history", "--no-trunc", "--format", "{{.CreatedBy}}", image]).stdout
    texts = {"env": "\n".join(config.get("Env") or []), "labels": json.dumps(config.get("Labels") or {}),
             "build history": history}
    findings = [f"{where}: {m.group(0)[:60]}" for where, text in texts.items()
                for pattern in (SECRET_ASSIGNMENT, AWS_KEY_ID) for m in pattern.finditer(text)]
    # Credential files outside installed packages (certifi's CA bundle and the like are not).
    names = " -o ".join(f"-name '{n}'" for n in CREDENTIAL_FILES)
    script = (f"find / -xdev \\( -path /proc -o -path /sys -o -path /opt/venv/lib -o -path /usr/lib "
              f"-o -path /usr/share \\) -prune -o -type f \\( {names} \\) -print 2>/dev/null; true")
    found = run(["run", "--rm", "--network", "none", "--user", "0:0", "--entrypoint", "sh", image, "-c",
                 script]).stdout.split()
    findings += [f"file: {path}" for path in found]
    return findings


@pytest.mark.reliability(
    "security", case="no credentials in the image",
    injected="the built image's env, labels, build history and filesystem (as root, every readable file)",
    seen="no secret-looking assignment, no AWS key id, no credential file (.aws/credentials, .pgpass, kubeconfig, "
         "SSH keys, docker/git credentials)",
    outcome="an image built with a key in ENV or a credentials file fails the test, naming where")
def test_the_image_holds_no_credentials(image):
    assert credential_findings(image) == []


def test_the_image_check_catches_a_planted_key(image, tmp_path):
    context = tmp_path / "leak"
    (context / "home" / ".aws").mkdir(parents=True)
    (context / "home" / ".aws" / "credentials").write_text("[default]\naws_access_key_id = x\n")
    (context / "Dockerfile").write_text(
        f"FROM {image}\nENV AWS_SECRET_ACCESS_KEY=planted-not-a-real-key\n"  # pragma: allowlist secret
        "COPY home/.aws /home/app/.aws\n")
    tag = f"ktx-leak-{uuid.uuid4().hex[:8]}:test"
    run(["build", "--network", "none", "-t", tag, str(context)])
    try:
        findings = credential_findings(tag)
    finally:
        run(["image", "rm", "-f", tag], check=False)
    assert any(f.startswith("env: AWS_SECRET_ACCESS_KEY=") for f in findings), findings
    assert "file: /home/app/.aws/credentials" in findings, findings


def docker_flags_from_values(deployment: dict, values: dict, scratch: Path) -> list[str]:
    """`docker run` flags for what the chart makes of a user deployment's values; an emptyDir
    is a fresh directory under `scratch`, world-writable as the kubelet makes it."""
    ctx, pod_ctx = deployment["securityContext"], deployment.get("podSecurityContext") or {}
    user = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
    assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) and user not in (None, 0)
    flags = ["--user", f"{user}:{pod_ctx.get('runAsGroup', pod_ctx.get('fsGroup', user))}"]
    if ctx.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    for cap in (ctx.get("capabilities") or {}).get("drop") or []:
        flags += ["--cap-drop", cap]
    if ctx.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    volumes = {v["name"]: v for v in deployment.get("volumes") or []}
    for mount in deployment.get("volumeMounts") or []:
        assert "emptyDir" in volumes[mount["name"]], mount  # the only kind the values use
        empty_dir = scratch / mount["name"]
        empty_dir.mkdir(parents=True)
        empty_dir.chmod(0o777)
        flags += ["--mount", f"type=bind,source={empty_dir},target={mount['mountPath']}"]
    # the chart's shared env, then the deployment's own
    env = {"DAGSTER_HOME": values.get("global", {}).get("dagsterHome", "/opt/dagster/dagster_home"),
           **{e["name"]: e["value"] for e in deployment["env"]}}
    for name, value in env.items():
        flags += ["--env", f"{name}={value}"]
    return flags


# The first code location by default; the others share its values (a YAML anchor), in the heavy run.
@pytest.mark.parametrize("name", [pytest.param(d["name"], marks=[pytest.mark.heavy] if i else [])
                                  for i, d in enumerate(yaml.safe_load(VALUES_EKS.read_text())
                                                        ["dagster-user-deployments"]["deployments"])])
def test_the_eks_code_server_runs_as_hardened_as_the_values_say(image, name, tmp_path):
    """The code server of one location, from values-eks.yaml: healthy, its repository listed."""
    from dagster._grpc.client import DagsterGrpcClient
    from dagster._serdes import deserialize_value

    values = yaml.safe_load(VALUES_EKS.read_text())
    deployment = next(d for d in values["dagster-user-deployments"]["deployments"] if d["name"] == name)
    flags = docker_flags_from_values(deployment, values, tmp_path)
    assert "--read-only" in flags and any(f.endswith("target=/tmp") for f in flags) and "ALL" in flags
    port = free_port()
    container = f"ktx-code-server-{uuid.uuid4().hex[:8]}"
    run(["run", "-d", "--name", container, "--network", "host", *flags, image, "dagster", "api", "grpc",
         *deployment["dagsterApiGrpcArgs"], "-h", "127.0.0.1", "-p", str(port)])
    try:
        client = DagsterGrpcClient(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 120
        while True:
            with socket.socket() as probe:  # listening yet? (the gRPC client would log each refusal)
                listening = probe.connect_ex(("127.0.0.1", port)) == 0
            if listening and client.health_check_query() == "SERVING":
                break
            state = run(["inspect", "-f", "{{.State.Running}}", container], check=False).stdout.strip()
            if state != "true" or time.monotonic() > deadline:
                logs = run(["logs", container], check=False)
                pytest.fail(f"code server {name} did not serve (running={state}):\n{logs.stdout[-3000:]}\n"
                            f"{logs.stderr[-3000:]}")
            time.sleep(1)
        listed = deserialize_value(client.list_repositories())
        assert [s.repository_name for s in listed.repository_symbols] == ["__repository__"], listed
        user = run(["exec", container, "id", "-u"]).stdout.strip()
        assert user == str(deployment["securityContext"]["runAsUser"])
    finally:
        run(["rm", "-f", container], check=False)

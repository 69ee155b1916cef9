"""Security promises of every pod we ship or generate, read from the files themselves.

* Hardened pods: every container of the Minikube manifests, of the step Jobs the executor
  renders (Minikube and EKS, from a real @transformation's tags), of the EKS code servers and
  run pods (deploy/helm/values-eks.yaml) runs as non-root, without privilege escalation, with
  every capability dropped, a read-only root filesystem and a writable /tmp volume, cpu and
  memory requests and limits.
* RBAC: only a namespaced Role, no wildcards, nothing beyond what dagster-k8s's step handler
  calls (tests/k8s/test_executor_rbac.py checks it against the requests a real run makes).
* Credentials: none in manifests, values or generated Jobs; a secret-looking env var comes
  from a Secret (secretKeyRef / envFrom secretRef), never a literal; no AWS keys anywhere
  (S3 through the environment's credential chain, the pod role on EKS); no IAM users or
  access keys in terraform/.
* `make dev` binds the webserver to 127.0.0.1.

Each checker is shown to catch a planted violation.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import ktx_dagster  # noqa: E402,F401  (framework package before executors/)
from ktx_dagster.executors.k8s import K8sSettings, render_step_job  # noqa: E402

pytestmark = pytest.mark.static

MANIFESTS = REPO / "deploy" / "minikube" / "manifests"
VALUES_EKS = REPO / "deploy" / "helm" / "values-eks.yaml"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|PRIVATE|ACCESS_KEY|API_KEY", re.I)
# What dagster-k8s's step handler (and our subclass) call, and the verb it needs:
#   create_namespaced_job_with_retries   jobs create        launch a step
#   get_job_status (read_..._job_status) jobs/status get    health check
#   delete_job                            jobs delete, pods list + delete   terminate a step
#   get_pods_in_job / get_pod_names_in_job   pods list      a failed step's pods
#   get_pod_by_name                       pods get          owner references (the run pod)
#   get_pod_debug_info                    pods/log get, events list   why a pod failed
EXECUTOR_NEEDS = {
    ("batch", "jobs"): {"create", "delete"},
    ("batch", "jobs/status"): {"get"},
    ("", "pods"): {"get", "list", "delete"},
    ("", "pods/log"): {"get"},
    ("", "events"): {"list"},
}


# --------------------------------------------------------------------------- what we ship


def shipped_docs() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        docs += [(f"{path.name}#{i}", d) for i, d in enumerate(yaml.safe_load_all(path.read_text())) if d]
    return docs


def transformation_k8s_config() -> dict:
    """The dagster-k8s/config tag of a real transformation (Hello World's)."""
    from assets.hello_world import hello_world

    (spec,) = hello_world.specs
    tags = {**(spec.tags or {}), **(hello_world.op.tags or {})}
    config = tags["dagster-k8s/config"]
    return json.loads(config) if isinstance(config, str) else config


def generated_jobs() -> list[tuple[str, dict]]:
    config = transformation_k8s_config()
    eks = K8sSettings.from_env("eks", env={"KTX_DATA_DIR": "s3://bucket/ktx",
                                           "KTX_IMAGE": "123456789012.dkr.ecr.us-east-1.amazonaws.com/ktx-dagster:1"})
    return [(f"step-job-{name}", render_step_job(settings, transformation="hello_world", partition="part_1",
                                                 k8s_config=config))
            for name, settings in (("minikube", K8sSettings.from_env("minikube", env={})), ("eks", eks))]


def helm_pods() -> list[tuple[str, dict]]:
    """The pods values-eks.yaml describes that run our image, as pod specs: each code server,
    and a run pod (the run launcher's runK8sConfig over the code server's volumes and env,
    which includeConfigInLaunchedRuns hands to the runs it launches)."""
    values = yaml.safe_load(VALUES_EKS.read_text())
    run_config = values["runLauncher"]["config"]["k8sRunLauncher"]
    out = []
    for d in values["dagster-user-deployments"]["deployments"]:
        container = {"name": d["name"], "image": "ktx", "env": d.get("env", []), "resources": d.get("resources"),
                     "securityContext": d.get("securityContext"), "volumeMounts": d.get("volumeMounts", [])}
        pod = {"securityContext": d.get("podSecurityContext"), "volumes": d.get("volumes", []),
               "containers": [container]}
        out.append((f"values-eks code server {d['name']}", pod))
        run_container = {**container, "resources": run_config.get("resources") or d.get("resources"),
                         **run_config["runK8sConfig"].get("containerConfig", {})}
        run_pod = {**pod, **run_config["runK8sConfig"]["podSpecConfig"], "containers": [run_container]}
        out.append((f"values-eks run pod of {d['name']}", run_pod))
    return out


def pod_specs(docs: list[tuple[str, dict]]) -> Iterator[tuple[str, dict]]:
    for name, doc in docs:
        kind = doc.get("kind")
        if kind == "Pod":
            yield name, doc["spec"]
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            yield name, doc["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield name, doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def every_pod() -> list[tuple[str, dict]]:
    return [*pod_specs(shipped_docs()), *pod_specs(generated_jobs()), *helm_pods()]


# --------------------------------------------------------------------------- checkers


def hardening_errors(pod: dict) -> list[str]:
    """What keeps a pod spec from the promise (empty: hardened)."""
    errors = []
    pod_ctx = pod.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            errors.append(f"{flag} is on")
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    for c in [*(pod.get("initContainers") or []), *pod["containers"]]:
        where = f"container {c['name']}"
        ctx = c.get("securityContext") or {}
        user = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
        if not ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) or user == 0:
            errors.append(f"{where}: runAsNonRoot is not true (or runAsUser is 0)")
        if ctx.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{where}: allowPrivilegeEscalation is not false")
        if ctx.get("privileged"):
            errors.append(f"{where}: privileged")
        caps = ctx.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []) or caps.get("add"):
            errors.append(f"{where}: capabilities are not drop [ALL] with nothing added")
        if ctx.get("readOnlyRootFilesystem") is not True:
            errors.append(f"{where}: readOnlyRootFilesystem is not true")
        tmp = [m for m in c.get("volumeMounts") or [] if m["mountPath"].rstrip("/") == "/tmp"]
        if not tmp or "emptyDir" not in volumes.get(tmp[0]["name"], {}) or tmp[0].get("readOnly"):
            errors.append(f"{where}: no writable emptyDir volume at /tmp")
        resources = c.get("resources") or {}
        for kind in ("requests", "limits"):
            missing = {"cpu", "memory"} - set(resources.get(kind) or {})
            if missing:
                errors.append(f"{where}: no {kind} for {', '.join(sorted(missing))}")
    return errors


def env_credential_errors(pod: dict) -> list[str]:
    """A secret-looking env var with a literal value; a Secret that is not a Secret."""
    errors = []
    for c in [*(pod.get("initContainers") or []), *pod["containers"]]:
        for e in c.get("env") or []:
            if SECRET_NAME.search(e["name"]) and ("value" in e or "secretKeyRef" not in (e.get("valueFrom") or {})):
                errors.append(f"container {c['name']}: env {e['name']} is not from a Secret (secretKeyRef)")
            if re.match(r"AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN)$", e["name"]):
                errors.append(f"container {c['name']}: env {e['name']}: S3 access comes from the pod's role")
    return errors


def rbac_errors(docs: list[tuple[str, dict]]) -> list[str]:
    errors = []
    namespaces = {d["metadata"]["name"] for _, d in docs if d["kind"] == "Namespace"}
    for name, doc in docs:
        kind = doc["kind"]
        if kind in ("ClusterRole", "ClusterRoleBinding"):
            errors.append(f"{name}: {kind}: the executor's rights are namespaced (Role)")
        if kind == "RoleBinding":
            if doc["roleRef"]["kind"] != "Role":
                errors.append(f"{name}: binds a {doc['roleRef']['kind']}, not the namespace's Role")
            for subject in doc["subjects"]:
                if subject.get("namespace", doc["metadata"]["namespace"]) != doc["metadata"]["namespace"]:
                    errors.append(f"{name}: binds {subject['name']} of another namespace")
        if kind != "Role":
            continue
        if doc["metadata"].get("namespace") not in namespaces:
            errors.append(f"{name}: Role outside the shipped namespace")
        for rule in doc["rules"]:
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    verbs = set(rule.get("verbs", []))
                    if "*" in {group, resource, *verbs}:
                        errors.append(f"{name}: wildcard in {rule}")
                        continue
                    extra = verbs - EXECUTOR_NEEDS.get((group, resource), set())
                    if extra:
                        errors.append(f"{name}: {sorted(extra)} on {group or 'core'}/{resource}: the executor "
                                      "never calls them")
            if rule.get("nonResourceURLs") or rule.get("resourceNames") == []:
                errors.append(f"{name}: unexpected rule {rule}")
    return errors


# --------------------------------------------------------------------------- the promises


@pytest.mark.reliability(
    "security", case="every pod runs hardened",
    injected="every container of the Minikube manifests, the step Jobs rendered for Minikube and EKS from a real "
             "transformation, the EKS code servers and run pods in values-eks.yaml",
    seen="each one non-root, allowPrivilegeEscalation false, capabilities drop [ALL], readOnlyRootFilesystem with "
         "an emptyDir at /tmp, cpu/memory requests and limits",
    outcome="a manifest that drops one of these fails this test, naming the pod, container and setting")
@pytest.mark.parametrize("name,pod", every_pod(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_pod_runs_hardened(name, pod):
    assert hardening_errors(pod) == [], name


def test_the_pods_checked_include_every_kind_we_ship():
    names = [name for name, _ in every_pod()]
    assert any(n.startswith("20-postgres") for n in names)
    assert {"step-job-minikube", "step-job-eks"} <= set(names)
    assert sum("values-eks" in n for n in names) == 4  # two code servers, and the runs of each


@pytest.mark.parametrize("plant,expected", [
    (lambda c, p: c["securityContext"].update(runAsNonRoot=False) or p["securityContext"].update(runAsNonRoot=False),
     "runAsNonRoot"),
    (lambda c, p: c["securityContext"].update(runAsUser=0), "runAsUser is 0"),
    (lambda c, p: c["securityContext"].update(allowPrivilegeEscalation=True), "allowPrivilegeEscalation"),
    (lambda c, p: c["securityContext"]["capabilities"].update(add=["NET_ADMIN"]), "capabilities"),
    (lambda c, p: c["securityContext"].update(readOnlyRootFilesystem=False), "readOnlyRootFilesystem"),
    (lambda c, p: c.update(volumeMounts=[m for m in c["volumeMounts"] if m["mountPath"] != "/tmp"]), "/tmp"),
    (lambda c, p: c["resources"].pop("limits"), "no limits for cpu, memory"),
    (lambda c, p: c["resources"]["requests"].pop("memory"), "no requests for memory"),
    (lambda c, p: p.update(hostNetwork=True), "hostNetwork"),
], ids=["root", "uid-0", "escalation", "capability", "writable-root", "no-tmp", "no-limits", "no-request",
        "host-network"])
def test_the_hardening_check_catches_a_planted_violation(plant, expected):
    _, job = generated_jobs()[0]
    pod = copy.deepcopy(job["spec"]["template"]["spec"])
    assert hardening_errors(pod) == []
    plant(pod["containers"][0], pod)
    errors = hardening_errors(pod)
    assert errors and any(expected in e for e in errors), errors


@pytest.mark.reliability(
    "security", case="RBAC limited to what the executor calls, in its namespace",
    injected="the Role and RoleBinding of deploy/minikube/manifests/10-rbac.yaml",
    seen="one namespaced Role: jobs create/delete, jobs/status get, pods get/list/delete, pods/log get, events "
         "list; no wildcard, no ClusterRole, no Secrets; tests/k8s/test_executor_rbac.py checks every API request "
         "of real step runs against it",
    outcome="a wider rule or a cluster-wide binding fails the test, naming the rule")
def test_rbac_is_namespaced_and_no_wider_than_the_executor_needs():
    docs = shipped_docs()
    assert rbac_errors(docs) == []
    roles = [d for _, d in docs if d["kind"] == "Role"]
    assert len(roles) == 1
    granted = {(g, r): set(rule["verbs"]) for rule in roles[0]["rules"] for g in rule["apiGroups"]
               for r in rule["resources"]}
    assert granted == EXECUTOR_NEEDS  # exactly: nothing missing, nothing more
    bindings = [d for _, d in docs if d["kind"] == "RoleBinding"]
    assert [s["name"] for b in bindings for s in b["subjects"]] == ["ktx-dagster"]  # never the step pods'


@pytest.mark.parametrize("plant,expected", [
    (lambda docs: docs.append(("x", {"kind": "ClusterRole", "metadata": {"name": "x"}, "rules": []})), "ClusterRole"),
    (lambda docs: _role(docs)["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}),
     "core/secrets"),
    (lambda docs: _role(docs)["rules"].append({"apiGroups": ["batch"], "resources": ["*"], "verbs": ["get"]}),
     "wildcard"),
    (lambda docs: _role(docs)["rules"][0]["verbs"].append("patch"), "['patch'] on batch/jobs"),
], ids=["cluster-role", "secrets", "wildcard", "extra-verb"])
def test_the_rbac_check_catches_a_planted_violation(plant, expected):
    docs = copy.deepcopy(shipped_docs())
    plant(docs)
    errors = rbac_errors(docs)
    assert any(expected in e for e in errors), errors


def _role(docs: list[tuple[str, dict]]) -> dict:
    return next(d for _, d in docs if d["kind"] == "Role")


@pytest.mark.reliability(
    "security", case="no credentials in manifests, values or generated Jobs",
    injected="every env var of every pod we ship or generate; values-eks.yaml; terraform/",
    seen="secret-looking variables come from a Secret (DAGSTER_PG_PASSWORD: secretKeyRef ktx-postgres / the chart's "
         "dagster-postgresql-secret); no AWS keys (IRSA pod role); no IAM users or access keys in Terraform",
    outcome="a literal password or an AWS key in a manifest fails the test, naming the pod and variable")
def test_no_credentials_in_what_we_ship():
    for name, pod in every_pod():
        assert env_credential_errors(pod) == [], name
    env = {e["name"]: e for e in generated_jobs()[0][1]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "ktx-postgres"
    values = yaml.safe_load(VALUES_EKS.read_text())
    assert values["generatePostgresqlPasswordSecret"] is False and "postgresqlPassword" not in values["postgresql"]
    assert values["global"]["postgresqlSecretName"]  # the chart reads the password from this Secret
    text = VALUES_EKS.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|AWS_SECRET_ACCESS_KEY", text)
    for tf in (REPO / "terraform").glob("*.tf"):
        body = tf.read_text()
        assert not re.search(r'resource\s+"aws_iam_(access_key|user)"', body), f"{tf.name}: keys instead of roles"


def test_the_credential_check_catches_a_planted_literal():
    _, job = generated_jobs()[0]
    pod = copy.deepcopy(job["spec"]["template"]["spec"])
    pod["containers"][0]["env"].append({"name": "DAGSTER_PG_PASSWORD", "value": "hunter2"})  # pragma: allowlist secret
    pod["containers"][0]["env"].append({"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "a", "key": "b"}}})
    errors = env_credential_errors(pod)
    assert any("DAGSTER_PG_PASSWORD is not from a Secret" in e for e in errors), errors
    assert any("AWS_ACCESS_KEY_ID: S3 access comes from the pod's role" in e for e in errors), errors


@pytest.mark.reliability(
    "security", case="make dev binds the webserver to 127.0.0.1",
    injected="the dagster dev lines of the Makefile and deploy/minikube/dev.sh",
    seen="`dagster dev -h 127.0.0.1`: the UI (which can launch runs, with no login) is not on the network",
    outcome="a dagster dev without -h 127.0.0.1 (it would listen where Dagster's default is) fails the test")
def test_the_ui_listens_on_loopback_only():
    lines = [line for path in (REPO / "Makefile", REPO / "deploy" / "minikube" / "dev.sh")
             for line in path.read_text().splitlines() if re.search(r"\bdagster dev\b", line)
             and not line.lstrip().startswith(("#", "@echo"))]
    assert len(lines) >= 2, lines
    for line in lines:
        assert re.search(r"dagster dev (.* )?(-h|--host) 127\.0\.0\.1\b", line), line


@pytest.mark.reliability(
    "security", case="S3 access from the environment or the pod's role",
    injected="AWS keys set in the environment while the data dir's S3 options and the DataDir resource's config "
             "are built",
    seen="the S3 options carry only the endpoint and retry settings (s3fs/botocore find the keys in the "
         "environment, or the IRSA pod role on EKS); the resource has no field for a key",
    outcome="a key copied into storage options or run config (where Dagster would store and show it) fails the test")
def test_s3_access_comes_from_the_environment(monkeypatch):
    from ktx_dagster import DataDir
    from ktx_dagster.data_dir import s3_storage_options

    planted = {"AWS_ACCESS_KEY_ID": "AKIAPLANTED000000000",  # pragma: allowlist secret
               "AWS_SECRET_ACCESS_KEY": "planted-secret-value",  # pragma: allowlist secret
               "AWS_SESSION_TOKEN": "planted-token-value"}  # pragma: allowlist secret
    for name, value in planted.items():
        monkeypatch.setenv(name, value)
    options = json.dumps(s3_storage_options("http://127.0.0.1:9"), default=repr)
    assert not [v for v in planted.values() if v in options], options
    assert not re.search(r'"(key|secret|token|aws_\w+)"\s*:', options), options
    fields = [f for f in DataDir.model_fields if SECRET_NAME.search(f) or f in ("key", "secret", "token")]
    assert fields == [], f"DataDir takes credentials in its config: {fields}"

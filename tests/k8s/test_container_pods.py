"""The emulated cluster with pods as containers of their image (runtime "docker"): limits are
cgroup limits (a pod over its memory limit is OOMKilled, exit 137, and its Job fails), the
security context holds, volumes, env and envFrom reach the container, and a missing image
leaves the pod waiting as a node without a registry would."""

from __future__ import annotations

import base64
import os

import pytest

from ktx_dagster.testing.containers import docker_client, require_image
from ktx_dagster.testing.k8s_emulator import KubeEmulator

IMAGE = os.environ.get("KTX_TEST_IMAGE_TAG", "ktx-dagster:test")
pytestmark = [pytest.mark.k8s, pytest.mark.container, pytest.mark.timeout(180)]


@pytest.fixture
def emu(tmp_path):
    require_image(IMAGE)
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 10001, 10001)
    with KubeEmulator(str(tmp_path / "emu"), host_paths={"/mnt/data": str(data)}, namespaces=["t"],
                      runtime="docker", docker=docker_client()) as e:
        yield e


def _job(name: str, script: str, *, memory: str = "256Mi", image: str = IMAGE, **container) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 10001, "runAsGroup": 10001, "runAsNonRoot": True, "fsGroup": 10001},
            "containers": [{
                "name": "main", "image": image, "command": ["sh", "-c", script],
                "resources": {"requests": {"cpu": "100m", "memory": memory}, "limits": {"cpu": "1", "memory": memory}},
                **container,
            }],
        }}},
    }


def _finished_pod(emu: KubeEmulator, job: str) -> dict:
    def done():
        pods = emu.pods("t", f"job-name={job}")
        return pods[0] if pods and pods[0]["status"].get("phase") in ("Succeeded", "Failed") else None

    return emu.wait_for(done, timeout=120)


def test_a_pod_over_its_memory_limit_is_oom_killed(emu):
    emu.create("jobs", "t", _job("greedy", "python -c 'x = bytearray(400 * 2**20); print(len(x))'", memory="64Mi"))
    emu.create("jobs", "t", _job("modest", "python -c 'x = bytearray(8 * 2**20); print(len(x))'", memory="64Mi"))
    greedy, modest = _finished_pod(emu, "greedy"), _finished_pod(emu, "modest")
    terminated = greedy["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (greedy["status"]["phase"], terminated["reason"], terminated["exitCode"]) == ("Failed", "OOMKilled", 137)
    assert modest["status"]["phase"] == "Succeeded"
    assert emu.wait_for(lambda: any(c["type"] == "Failed" and c["status"] == "True"
                                    for c in (emu.get("jobs", "t", "greedy")["status"].get("conditions") or [])))


def test_security_context_volumes_and_env_reach_the_container(emu):
    emu.create("configmaps", "t", {"metadata": {"name": "cfg"}, "data": {"setting": "from-configmap", "FROM_CM": "cm-env"}})
    emu.create("secrets", "t", {"metadata": {"name": "sec"},
                                "data": {"token": base64.b64encode(b"s3cret").decode()}})
    script = ("id -u; id -G; (touch /root-write 2>/dev/null && echo root-writable) || echo read-only-root; "
              "echo scratch > /tmp/t && cat /tmp/t; echo written > /mnt/data/out.txt; cat /etc/ktx/setting; "
              "echo; echo $TOKEN $FROM_CM $(pwd); grep CapEff /proc/self/status")
    job = _job("probe", script, workingDir="/mnt/data",
               securityContext={"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]}},
               env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}}],
               envFrom=[{"configMapRef": {"name": "cfg"}}],
               volumeMounts=[{"name": "data", "mountPath": "/mnt/data"}, {"name": "tmp", "mountPath": "/tmp"},
                             {"name": "cfg", "mountPath": "/etc/ktx"}])
    job["spec"]["template"]["spec"]["volumes"] = [
        {"name": "data", "hostPath": {"path": "/mnt/data"}}, {"name": "tmp", "emptyDir": {}},
        {"name": "cfg", "configMap": {"name": "cfg"}}]
    emu.create("jobs", "t", job)
    pod = _finished_pod(emu, "probe")
    log = emu.pod_log("t", pod["metadata"]["name"]).splitlines()
    assert pod["status"]["phase"] == "Succeeded", log
    assert log[0] == "10001" and "10001" in log[1].split()
    assert log[2:4] == ["read-only-root", "scratch"]
    assert log[4] == "from-configmap"
    assert log[5] == "s3cret cm-env /mnt/data"
    assert log[6].split() == ["CapEff:", "0000000000000000"]  # every capability dropped
    out = emu.host_paths["/mnt/data"] + "/out.txt"
    assert open(out).read() == "written\n" and os.stat(out).st_uid == 10001


def test_a_missing_image_waits_as_without_a_registry(emu):
    emu.create("jobs", "t", _job("ghost", "true", image="no-such-image:never"))

    def waiting():
        pods = emu.pods("t", "job-name=ghost")
        states = [cs.get("state", {}) for p in pods for cs in p["status"].get("containerStatuses") or []]
        return next((s["waiting"] for s in states if "waiting" in s and s["waiting"].get("reason") == "ErrImageNeverPull"), None)

    state = emu.wait_for(waiting, timeout=30)
    assert "no-such-image:never" in state["message"]

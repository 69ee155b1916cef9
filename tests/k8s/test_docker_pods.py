"""What the emulated kubelet makes of a pod spec when pods are containers (docker_pods.py):
the `docker run` a container gets, checked flag by flag without a daemon."""

from __future__ import annotations

from ktx_dagster.testing import docker_pods

POD = {
    "securityContext": {"runAsUser": 10001, "runAsGroup": 10001, "runAsNonRoot": True, "fsGroup": 10001},
    "containers": [],
}
CONTAINER = {
    "name": "step",
    "image": "ktx-dagster:test",
    "command": ["dagster", "api"],
    "args": ["execute_step", "ARGS"],
    "workingDir": "/opt/ktx",
    "resources": {"requests": {"cpu": "200m", "memory": "250Mi"}, "limits": {"cpu": "500m", "memory": "250Mi"}},
    "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]}},
}


def _flags(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def test_limits_security_mounts_env_and_command():
    run = docker_pods.run_command("ktx-ns.pod-0", POD, CONTAINER, {"KTX_DATA_DIR": "/mnt/data"},
                                  [("/tmp/data", "/mnt/data", False), ("/tmp/cm", "/opt/dagster/dagster_home", True)])
    argv = run.argv
    assert run.refused is None
    assert argv[:4] == ["docker", "run", "--name", "ktx-ns.pod-0"] and _flags(argv, "--network") == ["host"]
    # limits are cgroup limits; no swap, so going over the memory limit is an OOM kill
    assert _flags(argv, "--memory") == [str(250 * 2**20)] and _flags(argv, "--memory-swap") == [str(250 * 2**20)]
    assert _flags(argv, "--cpus") == ["0.500"]
    assert _flags(argv, "--user") == ["10001:10001"] and _flags(argv, "--group-add") == ["10001"]
    assert "--read-only" in argv and _flags(argv, "--cap-drop") == ["ALL"]
    assert _flags(argv, "--security-opt") == ["no-new-privileges"]
    assert _flags(argv, "--mount") == ["type=bind,source=/tmp/data,target=/mnt/data",
                                       "type=bind,source=/tmp/cm,target=/opt/dagster/dagster_home,readonly"]
    assert _flags(argv, "--env") == ["KTX_DATA_DIR=/mnt/data"] and _flags(argv, "--workdir") == ["/opt/ktx"]
    # Kubernetes: command replaces the image's ENTRYPOINT, args its CMD
    assert argv[argv.index("--entrypoint"):] == ["--entrypoint", "dagster", "ktx-dagster:test", "api", "execute_step", "ARGS"]


def test_args_only_keep_the_image_entrypoint_and_no_limits_no_flags():
    run = docker_pods.run_command("c", {}, {"name": "c", "image": "img", "args": ["a", "b"]}, {}, [])
    assert run.argv[-3:] == ["img", "a", "b"] and "--entrypoint" not in run.argv
    assert "--memory" not in run.argv and "--user" not in run.argv and "--read-only" not in run.argv


def test_root_is_refused_under_run_as_non_root():
    pod = {"securityContext": {"runAsNonRoot": True, "runAsUser": 0}}
    run = docker_pods.run_command("c", pod, {"name": "c", "image": "img"}, {}, [])
    assert run.refused == "container's runAsUser breaks non-root policy (runAsUser=0)"

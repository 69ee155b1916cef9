"""Pods as containers: what a kubelet makes of a Pod's container, as a `docker run`.

The emulated cluster's kubelet uses this when a Docker daemon is there (runtime "docker"):
the pod's image runs with the pod's

- resources: limits become cgroup limits (`--memory`, `--memory-swap` equal, so a step over
  its memory limit is OOM-killed for real; `--cpus`), requests are not enforced (as on a
  node with room to spare);
- security context: user and group, `runAsNonRoot` (refused for uid 0, as the kubelet
  refuses it), read-only root filesystem, dropped / added capabilities, no privilege
  escalation, `fsGroup` as a supplementary group;
- volumes: every mount a bind mount of the directory the emulator prepared for it
  (hostPath, ConfigMap and Secret files, emptyDir), read-only where the mount says so;
- env as resolved by the emulator, the working directory, and `command` / `args` with
  Kubernetes' rules (`command` replaces the image's ENTRYPOINT, `args` its CMD).

Containers share the host's network (`--network host`): the tests here talk to loopback
only, and the pods reach the emulated API, PostgreSQL and S3 endpoints there. What runs
them and how they ended (`OOMKilled`, exit code) comes from `docker inspect`.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

DOCKER = "docker"


def docker_available(docker: str = DOCKER) -> bool:
    """True when a Docker daemon answers (the client alone is not enough)."""
    try:
        return subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                              timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def image_present(image: str, docker: str = DOCKER) -> bool:
    return subprocess.run([docker, "image", "inspect", image], capture_output=True, timeout=60).returncode == 0


def _quantity(value: Any) -> Decimal:
    from ktx_dagster.task_resources import parse_quantity

    return parse_quantity(value, field_name="quantity")


def _security(pod_spec: Mapping[str, Any], container: Mapping[str, Any]) -> tuple[list[str], str | None]:
    """docker run flags for the pod's and container's securityContext; an error message
    where the kubelet would refuse to start the container."""
    pod_sc = pod_spec.get("securityContext") or {}
    sc = {**pod_sc, **(container.get("securityContext") or {})}
    flags: list[str] = []
    user, group = sc.get("runAsUser"), sc.get("runAsGroup")
    if user is not None:
        flags += ["--user", f"{user}:{group}" if group is not None else str(user)]
    if sc.get("runAsNonRoot") and user in (None, 0):
        # The image's own USER would decide; a uid 0 (or unknown) is what the kubelet refuses.
        if user == 0:
            return flags, "container's runAsUser breaks non-root policy (runAsUser=0)"
    if pod_sc.get("fsGroup") is not None:
        flags += ["--group-add", str(pod_sc["fsGroup"])]
    for gid in pod_sc.get("supplementalGroups") or []:
        flags += ["--group-add", str(gid)]
    if sc.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    if sc.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    caps = sc.get("capabilities") or {}
    for cap in caps.get("drop") or []:
        flags += ["--cap-drop", cap]
    for cap in caps.get("add") or []:
        flags += ["--cap-add", cap]
    if sc.get("privileged"):
        flags.append("--privileged")
    return flags, None


def _resources(container: Mapping[str, Any]) -> list[str]:
    limits = (container.get("resources") or {}).get("limits") or {}
    flags: list[str] = []
    if "memory" in limits:
        memory = int(_quantity(limits["memory"]))
        flags += ["--memory", str(memory), "--memory-swap", str(memory)]  # no swap: over the limit is an OOM kill
    if "cpu" in limits:
        flags += ["--cpus", f"{max(float(_quantity(limits['cpu'])), 0.01):.3f}"]
    if "ephemeral-storage" in limits:
        pass  # not enforced by docker's default storage driver; validated by the API only
    return flags


@dataclass(frozen=True)
class ContainerRun:
    name: str
    argv: list[str]  # the `docker run` command line
    refused: str | None = None  # what the kubelet would refuse (the pod then fails to start)


def run_command(
    name: str,
    pod_spec: Mapping[str, Any],
    container: Mapping[str, Any],
    env: Mapping[str, str],
    mounts: Sequence[tuple[str, str, bool]],
    *,
    docker: str = DOCKER,
    extra_flags: Sequence[str] = (),
) -> ContainerRun:
    """The `docker run` for one container of a pod. mounts: (local dir, mountPath, read-only)."""
    security, refused = _security(pod_spec, container)
    argv = [docker, "run", "--name", name, "--network", "host", "--init", *_resources(container), *security]
    for local, mount_path, read_only in mounts:
        argv += ["--mount", f"type=bind,source={local},target={mount_path}" + (",readonly" if read_only else "")]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    if container.get("workingDir"):
        argv += ["--workdir", container["workingDir"]]
    argv += list(extra_flags)
    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    if command:
        argv += ["--entrypoint", command[0], container["image"], *command[1:], *args]
    else:
        argv += [container["image"], *args]
    return ContainerRun(name=name, argv=argv, refused=refused)


@dataclass(frozen=True)
class Termination:
    exit_code: int
    reason: str  # Completed, Error, OOMKilled
    oom_killed: bool


def termination(name: str, returncode: int, docker: str = DOCKER) -> Termination:
    """How the container ended, as the kubelet reports it (`OOMKilled` from the cgroup)."""
    proc = subprocess.run([docker, "inspect", "--format", "{{json .State}}", name], capture_output=True, text=True,
                          timeout=60)
    state = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else {}
    code = int(state.get("ExitCode", returncode))
    oom = bool(state.get("OOMKilled"))
    if oom:
        return Termination(code or 137, "OOMKilled", True)
    return Termination(code, "Completed" if code == 0 else "Error", False)


def remove(name: str, docker: str = DOCKER) -> None:
    subprocess.run([docker, "rm", "--force", name], capture_output=True, timeout=60)


def stop(name: str, grace: float, docker: str = DOCKER) -> None:
    """SIGTERM, then SIGKILL after the grace period, as a kubelet stops a container."""
    subprocess.run([docker, "stop", "--time", str(max(0, math.ceil(grace))), name], capture_output=True, timeout=120)

"""pytest helpers for tests that run containers: is there a daemon, and the image to run.

`KTX_DOCKER` names the docker client (default `docker`), `DOCKER_HOST` the daemon. Without
a daemon the tests skip, saying how to get one, or fail when `KTX_REQUIRE_DOCKER=1` (CI,
where `make test` starts one).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from ktx_dagster.testing import docker_pods


def docker_client() -> str:
    return os.environ.get("KTX_DOCKER", docker_pods.DOCKER)


def require_image(image: str) -> str:
    """`image` if a daemon answers and holds it; otherwise skip (or fail under KTX_REQUIRE_DOCKER=1)."""
    docker = docker_client()
    if not docker_pods.docker_available(docker):
        problem = "no Docker daemon answers (make images starts one: .ci/docker.sh)"
    elif not docker_pods.image_present(image, docker):
        problem = f"image {image!r} is not built (make images)"
    else:
        return image
    if os.environ.get("KTX_REQUIRE_DOCKER", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"{problem} (KTX_REQUIRE_DOCKER=1)", pytrace=False)
    pytest.skip(problem)


def run(args: list[str], timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """`docker <args>`, output captured; a failure says what docker said."""
    proc = subprocess.run([docker_client(), *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc

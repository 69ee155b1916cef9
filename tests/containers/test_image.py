"""The image, built for real (deploy/Dockerfile on a Debian bookworm base, from wheels): what
a step pod gets. It holds the library and the examples' code locations as installed
packages, no source tree, runs as uid 10001, and runs a partition under the security
context the step pods get (read-only root, no capabilities, no privilege escalation)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from ktx_dagster.testing.containers import require_image, run

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("KTX_TEST_IMAGE_TAG", "ktx-dagster:test")
HARDENED = ["--network", "host", "--user", "10001:10001", "--read-only", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--tmpfs", "/tmp",
            # a read-only root: Dagster's instance and home (telemetry, caches) go to /tmp
            "--env", "HOME=/tmp", "--env", "DAGSTER_HOME=/tmp/dagster_home"]

pytestmark = pytest.mark.container


@pytest.fixture(scope="module")
def image() -> str:
    return require_image(IMAGE)


def test_every_code_location_imports_from_root(image):
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
    modules = [entry["python_module"]["module_name"] for entry in workspace["load_from"]]
    script = "; ".join(f"import {m}; assert {m}.defs.get_repository_def().asset_graph" for m in modules)
    proc = run(["run", "--rm", *HARDENED, "--workdir", "/", image, "python", "-W", "ignore", "-c", script])
    assert proc.returncode == 0


def test_non_root_wheels_only_no_source_tree(image):
    proc = run(["run", "--rm", "--network", "host", image, "sh", "-c",
                "id -u; pip list --format freeze; ls -d /src /wheelhouse /opt/build 2>&1; python -c "
                "'import ktx_dagster, assets; print(ktx_dagster.__file__); print(assets.__file__)'"])
    lines = proc.stdout.splitlines()
    assert lines[0] == "10001"
    packages = {line.split("==")[0].lower() for line in lines if "==" in line}
    assert {"ktx-dagster", "ktx-dagster-examples", "dagster", "dagster-k8s"} <= packages
    assert sum("No such file or directory" in line for line in lines) == 3  # build stages left nothing
    assert all(path.startswith("/opt/venv/lib/") for path in lines[-2:]), lines[-2:]


def test_one_partition_inside_the_image(image, tmp_path):
    data = tmp_path / "data"
    (data / "hello_world" / "raw").mkdir(parents=True)
    (data / "hello_world" / "raw" / "part_1.txt").write_text("alpha\nbeta\n")
    for path in [data, *data.rglob("*")]:
        os.chown(path, 10001, 10001)  # the data mount belongs to the pods' user, as on a node
    run(["run", "--rm", *HARDENED, "--mount", f"type=bind,source={data},target=/mnt/data", image,
         "ktx", "materialize", "-m", "assets.definitions", "--partition", "part_1"])
    out = data / "hello_world" / "part_1.txt"
    assert out.read_text() == "Hello World: alpha\nHello World: beta\n"
    assert out.stat().st_uid == 10001

"""The examples through their code locations, installed as a user's project would be: the
`ktx-dagster-examples` wheel (deploy/examples/pyproject.toml, what the image installs) on the
wheel of the library, run from an empty folder outside the checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from journey_env import REPO, UserEnv, wheel_top_level

pytestmark = pytest.mark.journey
CODE_LOCATIONS = ("assets", "resources", "executors", "spotify_mpc")


@pytest.fixture(scope="module")
def examples(user_env: UserEnv, tmp_path_factory) -> tuple[Path, Path]:
    """(the examples' wheel, a folder it is installed into), built from a clean copy of the
    sources so no earlier build/ can leak into it."""
    src = tmp_path_factory.mktemp("examples-src")
    for name in CODE_LOCATIONS:
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    (src / "deploy" / "examples").mkdir(parents=True)
    shutil.copy(REPO / "deploy" / "examples" / "pyproject.toml", src / "deploy" / "examples")
    dist = tmp_path_factory.mktemp("examples-dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
                    "-w", str(dist), str(src / "deploy" / "examples")], check=True, timeout=300)
    (wheel,) = dist.glob("ktx_dagster_examples-*.whl")
    # beside the library, not in the user's venv: the journey project has `assets` and
    # `resources` packages of its own
    site = tmp_path_factory.mktemp("examples-site")
    user_env.run(["python", "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)], cwd=site)
    return wheel, site


def test_the_examples_wheel_holds_the_code_locations(examples):
    wheel, _ = examples
    assert {t for t in wheel_top_level(wheel) if not t.endswith(".dist-info")} == set(CODE_LOCATIONS)


def test_hello_world_through_its_installed_code_location(user_env: UserEnv, examples, tmp_path):
    _, site = examples
    env = {"PYTHONPATH": str(site), "KTX_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home")}
    user_env.run(["python", "-m", "assets.samples", "write", "--parts", "3"], cwd=tmp_path, **env)
    proc = user_env.run(["ktx", "materialize", "-m", "assets.definitions"], cwd=tmp_path, **env)
    assert "hello_world                  3 ok, 0 failed" in proc.stdout, proc.stdout
    shown = user_env.run(["python", "-m", "assets.samples", "show"], cwd=tmp_path, **env)
    assert shown.stdout.count("Hello World: line 1 of part") == 3


def test_spotify_chain_through_its_installed_code_location(user_env: UserEnv, examples, tmp_path):
    """The mini contest end to end: generated slices, every asset of the chain, the evaluation."""
    _, site = examples
    env = {"PYTHONPATH": str(site), "KTX_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home"),
           "KTX_SPOTIFY_SIZE": "mini", "KTX_MAX_CONCURRENT": "2"}
    user_env.run(["python", "-m", "spotify_mpc.samples", "write"], cwd=tmp_path, **env)
    proc = user_env.run(["ktx", "materialize", "-m", "spotify_mpc.definitions"], cwd=tmp_path, timeout=900, **env)
    assert "failed" not in proc.stdout.split("summary:")[1].replace("0 failed", ""), proc.stdout
    shown = user_env.run(["python", "-m", "spotify_mpc.samples", "show"], cwd=tmp_path, **env)
    assert "R-precision" in shown.stdout or "r_precision" in shown.stdout, shown.stdout
    assert (tmp_path / "data" / "challenge_submission.txt").stat().st_size > 0

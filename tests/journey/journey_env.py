"""A new user's environment: ktx-dagster installed from a wheel built from this checkout, in
a virtualenv of its own, and a project made the way a user makes one, outside the repository.

The virtualenv is kept between runs (`~/.cache/ktx-dagster/journey-venv`, rebuilt when pyproject.toml or
.ci/constraints.txt change); the wheel is rebuilt and reinstalled every run, so the test
always sees the checkout as it is.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Kept between runs and checkouts (a CI clone is new every time), rebuilt when the
# dependencies change: the fingerprint below.
VENV = Path(os.environ.get("KTX_JOURNEY_VENV", Path.home() / ".cache" / "ktx-dagster" / "journey-venv"))
# Nothing of this checkout reaches the user's processes: no PYTHONPATH, no repo cwd.
DROP_ENV = ("PYTHONPATH", "VIRTUAL_ENV", "KTX_DATA_DIR", "KTX_DEPLOYMENT", "DAGSTER_HOME", "PYTEST_ADDOPTS")


@dataclass
class UserEnv:
    venv: Path
    wheel: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in DROP_ENV}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["DAGSTER_DG_UPDATE_CHECK_ENABLED"] = "0"  # dg asks PyPI for a newer version otherwise
        return {**env, **extra}

    def run(self, args: list[str], cwd: Path, timeout: float = 300, check: bool = True, **env: str):
        proc = subprocess.run(args, cwd=cwd, env=self.env(**env), capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, args))} exited {proc.returncode}\n"
                                 f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
        return proc


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", ".ci/constraints.txt"):
        digest.update((REPO / name).read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()[:16]


def _pip(venv: Path, *args: str) -> None:
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
                   check=True, timeout=1200)


def wheel_top_level(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return {name.split("/", 1)[0] for name in zf.namelist()}


def build_user_env(dist: Path) -> UserEnv:
    """`pip wheel .` of this checkout, installed with its `testing` extra into a venv of its own."""
    # From a clean copy of the working tree (tracked and new files, as git lists them), as a
    # user's CI builds from a clean checkout: setuptools reuses a build/ folder it finds, and
    # an old one would slip files that are gone from the source into the wheel.
    src = dist / "src"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.split("\0")
    for relative in filter(None, listed):
        if (REPO / relative).is_file():
            (src / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / relative, src / relative)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
                    "-w", str(dist), str(src)], check=True, timeout=600, cwd=dist)
    (wheel,) = dist.glob("ktx_dagster-*.whl")
    stamp = VENV / ".ktx-journey"
    if not stamp.exists() or stamp.read_text() != _fingerprint():
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        # the library's dependencies at the tested versions, and setuptools to install a project
        _pip(VENV, "-c", str(REPO / ".ci" / "constraints.txt"), f"{wheel}[testing]", "setuptools>=68", "wheel")
        stamp.write_text(_fingerprint())
    _pip(VENV, "--no-deps", "--force-reinstall", str(wheel))
    return UserEnv(venv=VENV, wheel=wheel)

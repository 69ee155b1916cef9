"""The CLI names a code location as Dagster's own CLI does, and says plainly when it cannot
find one: -m MODULE [-a ATTR], -f FILE, -w WORKSPACE, or the current folder's pyproject.toml
([tool.dg.project] / [tool.dagster]), else its workspace.yaml."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ktx_dagster.code_location import CodeLocation, CodeLocationError, resolve

REPO = Path(__file__).resolve().parents[1]

DEFS = """
import dagster as dg

@dg.asset
def {name}() -> int:
    return 1

defs = dg.Definitions(assets=[{name}])
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _asset_names(location: CodeLocation) -> set[str]:
    return {k.to_user_string() for k in location.load().asset_graph.materializable_asset_keys}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A folder with two code locations as modules, nothing of this repository on its path."""
    _write(tmp_path / "first_loc" / "__init__.py", "")
    _write(tmp_path / "first_loc" / "definitions.py", DEFS.format(name="first_asset"))
    _write(tmp_path / "second_loc.py", DEFS.format(name="second_asset"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_module_file_and_attribute(project):
    (module,) = resolve(module="first_loc.definitions")
    assert _asset_names(module) == {"first_asset"}
    (file,) = resolve(file="second_loc.py", attribute="defs")
    assert _asset_names(file) == {"second_asset"}
    assert file.file == str(project / "second_loc.py")


def test_workspace_yaml_gives_every_location(project):
    _write(project / "conf" / "workspace.yaml", """
        load_from:
          - python_module: {module_name: first_loc.definitions, location_name: one, working_directory: ..}
          - python_file: {relative_path: ../second_loc.py, location_name: two}
    """)
    locations = resolve(workspace=str(project / "conf" / "workspace.yaml"))
    assert [loc.name for loc in locations] == ["one", "two"]
    assert [_asset_names(loc) for loc in locations] == [{"first_asset"}, {"second_asset"}]


def test_pyproject_dg_project_is_the_default(project):
    _write(project / "pyproject.toml", """
        [tool.dg]
        directory_type = "project"
        [tool.dg.project]
        root_module = "first_loc"
    """)
    (location,) = resolve()
    assert location.module == "first_loc.definitions" and _asset_names(location) == {"first_asset"}


def test_pyproject_tool_dagster_then_workspace_yaml(project):
    _write(project / "pyproject.toml", '[tool.dagster]\npython_file = "second_loc.py"\n')
    (location,) = resolve()
    assert _asset_names(location) == {"second_asset"}
    _write(project / "pyproject.toml", '[project]\nname = "x"\n')  # neither: the workspace.yaml
    _write(project / "workspace.yaml", "load_from:\n  - python_module: first_loc.definitions\n")
    (location,) = resolve()
    assert location.module == "first_loc.definitions"


def test_nothing_configured_says_what_to_pass(project):
    with pytest.raises(CodeLocationError, match=r"pass -m your_project.definitions, -f definitions.py or -w"):
        resolve()
    with pytest.raises(CodeLocationError, match="name one code location"):
        resolve(module="first_loc.definitions", workspace="workspace.yaml")


def test_missing_module_and_module_without_definitions(project):
    with pytest.raises(CodeLocationError, match=r"module 'no_such_pkg.definitions' does not exist .*no module named 'no_such_pkg'"):
        resolve(module="no_such_pkg.definitions")[0].load()
    _write(project / "empty_loc.py", "VALUE = 1\n")
    with pytest.raises(CodeLocationError, match=r"empty_loc holds no Definitions.*definitions_for"):
        resolve(module="empty_loc")[0].load()
    with pytest.raises(CodeLocationError, match=r"file '.*missing.py' does not exist"):
        resolve(file="missing.py")[0].load()


def test_an_import_error_inside_the_module_is_the_users_own(project):
    """A module that exists but fails to import is not reported as missing: the user's
    own traceback says where."""
    _write(project / "broken_loc.py", "import no_such_dependency\n")
    with pytest.raises(Exception) as info:
        resolve(module="broken_loc")[0].load()
    assert not isinstance(info.value, CodeLocationError)
    assert "no_such_dependency" in str(info.value)


@pytest.mark.reliability(
    "bad input", case="a code location module that does not exist",
    injected="`ktx sync -m no_such_pkg.definitions`",
    seen="'ktx: code location module 'no_such_pkg.definitions' does not exist ...' on stderr, no traceback; exit 2",
    outcome="nothing runs and nothing is written; the message says how to name the location")
def test_cli_exit_code_and_message_for_a_missing_module(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "ktx_dagster", "sync", "-m", "no_such_pkg.definitions"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "ktx: code location module 'no_such_pkg.definitions' does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_materializes_a_workspace_location_by_selection(tmp_path):
    """`ktx materialize -w workspace.yaml --select hello_world`: only the location holding
    the selection runs anything; the other one is loaded and left alone."""
    env = {**os.environ, "KTX_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home")}
    subprocess.run([sys.executable, "-m", "assets.samples", "write", "--parts", "2"], cwd=REPO, env=env, check=True)
    proc = subprocess.run([sys.executable, "-m", "ktx_dagster", "materialize", "-w", "workspace.yaml",
                           "--select", "hello_world"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "== code location hello_world" in proc.stdout and "== code location spotify_mpc" in proc.stdout
    assert "hello_world                  2 ok, 0 failed" in proc.stdout
    assert "mpd_slices" not in proc.stdout

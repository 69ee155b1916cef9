"""The examples are ktx-dagster's first users: they import only its public API, as anyone's
project would (the names `ktx_dagster` exports, and the rules of `ktx_dagster.checks`), and
no Dagster internal."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ktx_dagster
import ktx_dagster.checks

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = ("assets", "spotify_mpc", "resources", "executors")
PUBLIC_MODULES = {"ktx_dagster": set(ktx_dagster.__all__),
                  "ktx_dagster.checks": {n for n in dir(ktx_dagster.checks) if not n.startswith("_")}}


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.lineno, node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []


@pytest.mark.parametrize("folder", EXAMPLES)
def test_examples_use_only_the_public_api(folder):
    problems = []
    for path in sorted((REPO / folder).rglob("*.py")):
        where = path.relative_to(REPO)
        for line, module, names in _imports(path):
            if module.startswith("dagster._") or module.startswith("dagster_k8s."):
                problems.append(f"{where}:{line}: {module} is not for users")
            if module == "ktx_dagster" or module.startswith("ktx_dagster."):
                public = PUBLIC_MODULES.get(module)
                if public is None:
                    problems.append(f"{where}:{line}: {module} is not a public module of ktx_dagster")
                else:
                    problems += [f"{where}:{line}: {module}.{n} is not public" for n in names if n not in public]
    assert not problems, "\n".join(problems)


def test_the_rule_catches_an_internal_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from ktx_dagster.io_manager import KtxIOManager\nfrom ktx_dagster import _private\n")
    found = list(_imports(bad))
    assert found[0][1] not in PUBLIC_MODULES and "_private" not in PUBLIC_MODULES["ktx_dagster"]

"""Dagster internals live in ktx_dagster/compat.py alone, and each of them still exists.

An upgrade of dagster or dagster-k8s that moves or renames one fails here, naming it, instead
of failing a run in production.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import ktx_dagster
from ktx_dagster import compat

PACKAGE = Path(ktx_dagster.__file__).parent
# `dagster._x`, `dagster_k8s._x`, or an underscore name imported from dagster / dagster-k8s
INTERNAL = re.compile(r"\bdagster(_k8s)?\.[\w.]*\b_\w|from dagster(_k8s)?[\w.]* import [^\n]*\b_\w")


@pytest.mark.parametrize("name", compat.__all__)
def test_each_internal_still_exists(name):
    assert getattr(compat, name) is not None


@pytest.mark.parametrize("module", compat.PRELOAD_INTERNAL_MODULES)
def test_each_preloaded_internal_module_still_exists(module):
    importlib.import_module(module)


def test_no_other_module_uses_a_dagster_internal():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "compat.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if INTERNAL.search(code):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert not offenders, "Dagster internals outside ktx_dagster/compat.py:\n" + "\n".join(offenders)


def test_the_pattern_catches_what_it_must():
    # the rule above is only as good as this pattern
    assert INTERNAL.search("from dagster._core.launcher import DefaultRunLauncher")
    assert INTERNAL.search("from dagster_k8s.executor import _K8S_EXECUTOR_CONFIG_SCHEMA")
    assert INTERNAL.search("import dagster._check as check")
    assert not INTERNAL.search("from dagster_k8s.job import DagsterK8sJobConfig")
    assert not INTERNAL.search("import dagster as dg")

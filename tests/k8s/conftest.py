"""Fixtures for the k8s suite (helpers live in k8s_harness.py).

`ktx_k8s_cluster*` come from ktx_dagster.testing.pytest_plugin: the emulator, or the real
cluster named by KTX_TEST_KUBECONFIG. `ktx_postgres`: a throwaway PostgreSQL server (skips
without Debian's `postgresql` binaries, fails instead when KTX_REQUIRE_POSTGRES=1).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
for _path in (_HERE.parents[1], _HERE):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from k8s_harness import DagsterK8sHarness, dagster_harness  # noqa: E402
from ktx_dagster.testing.pytest_plugin import (  # noqa: E402,F401
    K8sTestCluster,
    ktx_k8s_cluster,
    ktx_k8s_cluster_module,
    ktx_postgres,
)


@pytest.fixture(scope="module")
def harness(ktx_k8s_cluster_module: K8sTestCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterK8sHarness]:
    """Default run launcher (plain `dagster dev`), SQLite instance in a temp DAGSTER_HOME."""
    with dagster_harness(ktx_k8s_cluster_module, tmp_path_factory.mktemp("dagster_home")) as h:
        yield h


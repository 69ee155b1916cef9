"""ktx-dagster: kube-transform's transformations as partitioned Dagster assets.

    from ktx_dagster import FilePartitions, DataDir, transformation, definitions_for

    FILES = FilePartitions(name="raw_files", directory="raw", pattern="part_*.txt")

    @transformation(partitions=FILES, cpu="200m", memory="250Mi")
    def cleaned(context, data_dir: DataDir) -> str:
        return FILES.path_for(data_dir.path, context.partition_key).read_text().strip()

    defs = definitions_for(assets=[cleaned])

Everything a project needs is importable from here; the submodules hold the same names
(`ktx_dagster.checks` for asset-check rules, `ktx_dagster.testing` for test helpers, which
need the `ktx-dagster[testing]` extra).
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from ktx_dagster.checks import Check, CheckContext, check, evaluate, output_checks
from ktx_dagster.data_dir import DataDir, data_root
from ktx_dagster.definitions import definitions_for
from ktx_dagster.deployment import DEPLOYMENTS, deployment, executor_for, resources_for
from ktx_dagster.executors.local import local_executor
from ktx_dagster.formats import FORMATS, format_by_name
from ktx_dagster.io_manager import DataDirIOManager, KtxIOManager, data_resources
from ktx_dagster.lazy import LazyPartitions
from ktx_dagster.partitions import (
    ChunkedPartitionMapping,
    ChunkedPartitions,
    FilePartitions,
    natural_sorted,
    partition_sources,
)
from ktx_dagster.sensors import file_partitions_sensor, file_sensors
from ktx_dagster.task_resources import TaskResources, TaskResourcesError
from ktx_dagster.transformation import Upstream, transformation

# Imported on first use: the Kubernetes client costs a local project ~0.5 s at every start.
_LAZY = {"K8sSettings": "ktx_dagster.executors.k8s", "k8s_executor": "ktx_dagster.executors.k8s"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ktx_dagster' has no attribute {name!r}")


try:
    __version__ = version("ktx-dagster")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "DEPLOYMENTS",
    "FORMATS",
    "Check",
    "CheckContext",
    "ChunkedPartitionMapping",
    "ChunkedPartitions",
    "DataDir",
    "DataDirIOManager",
    "FilePartitions",
    "K8sSettings",
    "KtxIOManager",
    "LazyPartitions",
    "TaskResources",
    "TaskResourcesError",
    "Upstream",
    "__version__",
    "check",
    "data_resources",
    "data_root",
    "definitions_for",
    "deployment",
    "evaluate",
    "executor_for",
    "file_partitions_sensor",
    "file_sensors",
    "format_by_name",
    "k8s_executor",
    "local_executor",
    "natural_sorted",
    "output_checks",
    "partition_sources",
    "resources_for",
    "transformation",
]

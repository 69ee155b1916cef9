"""ktx-dagster: kube-transform's transformations as partitioned Dagster assets."""

from ktx_dagster.lazy import LazyPartitions
from ktx_dagster.partitions import ChunkedPartitionMapping, ChunkedPartitions, FilePartitions
from ktx_dagster.task_resources import TaskResources, TaskResourcesError
from ktx_dagster.transformation import Upstream, transformation

__all__ = [
    "ChunkedPartitionMapping",
    "ChunkedPartitions",
    "FilePartitions",
    "LazyPartitions",
    "TaskResources",
    "TaskResourcesError",
    "Upstream",
    "transformation",
]

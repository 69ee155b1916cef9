"""`ktx_dagster.components.Transformations`: the transformations of a defs folder, wired for
a deployment from YAML.

    # src/my_project/defs/defs.yaml  (dg scaffold defs ktx_dagster.components.Transformations ...)
    type: ktx_dagster.components.Transformations
    attributes:
      deployment: local          # local | minikube | eks (default: env KTX_DEPLOYMENT)
      data_dir: ./data           # relative to the project; or s3://bucket/prefix (default: KTX_DATA_DIR)
      max_concurrent: 2          # steps of one run at once
      image: my-project:1.0      # Kubernetes: the step pods' image (default: KTX_IMAGE)
      namespace: my-namespace    # Kubernetes: where step Jobs go (default: KTX_K8S_NAMESPACE)

Every Python file beside the defs.yaml, and below it, is loaded: a transformation is one file
dropped into the folder. What `ktx_dagster.definitions_for` wires, this wires: the data dir
and the IO manager on it, the executor, one file sensor per FilePartitions source, the
asset checks the files define.

The YAML gives defaults; the KTX_* environment overrides them (KTX_DEPLOYMENT, KTX_DATA_DIR,
KTX_IMAGE, KTX_K8S_NAMESPACE), as it does everywhere else in ktx-dagster. That is also how a
step pod sees its own data dir (/mnt/data on Minikube) while the laptop that launched it
uses ./data: the executor hands the pod its KTX_DATA_DIR.
"""

from __future__ import annotations

import os
from typing import Literal, Optional

import dagster as dg

from ktx_dagster.data_dir import DataDir
from ktx_dagster.definitions import definitions_for
from ktx_dagster.deployment import executor_for


class Transformations(dg.Component, dg.Model, dg.Resolvable):
    """ktx-dagster transformations: the Python files of this folder as partitioned assets,
    with a data dir, an IO manager, an executor and file sensors for one deployment."""

    deployment: Optional[Literal["local", "minikube", "eks"]] = None
    data_dir: Optional[str] = None
    max_concurrent: Optional[int] = None
    image: Optional[str] = None
    namespace: Optional[str] = None
    file_sensors: bool = True

    def data_dir_resource(self, project_root: os.PathLike | str) -> DataDir | None:
        """The data dir named in YAML (relative paths are the project's), or None for the env's."""
        if not self.data_dir or os.environ.get("KTX_DATA_DIR"):
            return None
        root = self.data_dir
        if "://" not in root and not os.path.isabs(root):
            root = os.path.normpath(os.path.join(os.fspath(project_root), root))
        return DataDir(root=root)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        # dg loads nothing further below a folder that has a defs.yaml: the files are ours to load.
        modules = [
            context.load_defs_relative_python_module(path)
            for path in sorted(context.path.rglob("*.py"))
            if "__pycache__" not in path.parts
        ]
        data_dir = self.data_dir_resource(context.project_root)
        deployment = os.environ.get("KTX_DEPLOYMENT") or self.deployment
        return definitions_for(
            assets=modules,
            asset_checks=modules,
            resources={"data_dir": data_dir} if data_dir else None,
            executor=executor_for(
                deployment,
                max_concurrent_steps=self.max_concurrent,
                image=None if os.environ.get("KTX_IMAGE") else self.image,
                namespace=None if os.environ.get("KTX_K8S_NAMESPACE") else self.namespace,
            ),
            deployment=deployment,
            file_sensors_enabled=self.file_sensors,
        )

"""This repository's resources per deployment: where the examples' data lives.

Dagster's example projects keep the resources each deployment gets in a `resources`
package; so does this repository, for its two code locations (`assets`: Hello World,
`spotify_mpc`: the Million Playlist chain). What `data_dir_for` returns is handed to
`ktx_dagster.definitions_for(resources=...)`, and the IO manager follows it.

    local     KTX_DATA_DIR, default ./data
    minikube  the laptop's ./data (KTX_DATA_DIR), which Minikube mounts at /mnt/data: the
              step pods see it there (the executor sets their KTX_DATA_DIR)
    eks       KTX_DATA_DIR = s3://bucket/prefix (terraform output `data_dir`); pods reach it
              with their IAM role, never keys
"""

from __future__ import annotations

import os

from ktx_dagster import DataDir, deployment


def data_dir_for(name: str | None = None) -> DataDir:
    name = deployment(name)
    root = os.environ.get("KTX_DATA_DIR", "").strip()
    if name == "eks" and not root.startswith("s3://"):
        raise ValueError(
            f"KTX_DEPLOYMENT=eks: KTX_DATA_DIR={root!r} must be s3://bucket/prefix "
            "(terraform -chdir=terraform output -raw data_dir)"
        )
    return DataDir(root=root) if root else DataDir()


def resources_for(name: str | None = None) -> dict[str, object]:
    return {"data_dir": data_dir_for(name)}

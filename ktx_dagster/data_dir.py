"""The one data root every task reads and writes under: a local folder or s3://bucket/prefix.

`KTX_DATA_DIR` sets it (default `./data`; `/mnt/data` inside Minikube pods, `s3://...` on
EKS). S3 uses the standard AWS credential chain (env, profile, IRSA / Pod Identity); an
S3-compatible store is reached with `KTX_S3_ENDPOINT_URL` (or AWS's own `AWS_ENDPOINT_URL`).
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from pydantic import Field
from upath import UPath

DEFAULT_DATA_DIR = "./data"


def s3_storage_options(endpoint_url: str | None = None) -> dict[str, Any]:
    endpoint = endpoint_url or os.environ.get("KTX_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
    return {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {}


def data_root(root: str | None = None, endpoint_url: str | None = None) -> UPath:
    """Resolve the data root; local paths become absolute so worker processes agree on them."""
    root = root or os.environ.get("KTX_DATA_DIR") or DEFAULT_DATA_DIR
    if root.startswith("s3://"):
        return UPath(root.rstrip("/"), **s3_storage_options(endpoint_url))
    if "://" in root and not root.startswith("file://"):
        raise ValueError(
            f"KTX_DATA_DIR={root!r}: only local paths and s3://bucket/prefix are supported"
        )
    return UPath(os.path.abspath(root.removeprefix("file://")))


class DataDir(dg.ConfigurableResource):
    """Where raw inputs are found; asset bodies use it to list and read files they don't own."""

    root: str = Field(
        default_factory=lambda: os.environ.get("KTX_DATA_DIR", DEFAULT_DATA_DIR),
        description="Local path or s3://bucket/prefix (env KTX_DATA_DIR).",
    )
    endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (env KTX_S3_ENDPOINT_URL)."
    )

    @property
    def path(self) -> UPath:
        return data_root(self.root, self.endpoint_url)

    def __truediv__(self, relative: str) -> UPath:
        return self.path / relative

    def glob(self, relative_dir: str, pattern: str) -> list[UPath]:
        """Files in `relative_dir` matching `pattern`, sorted by name (empty if the dir is absent)."""
        folder = self.path / relative_dir
        try:
            return sorted((p for p in folder.glob(pattern) if p.is_file()), key=lambda p: p.name)
        except FileNotFoundError:
            return []

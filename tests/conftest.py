"""Shared fixtures: a temp data dir, an instance, and a real S3 protocol endpoint on loopback."""

from __future__ import annotations

import uuid

import boto3
import dagster as dg
import pytest

from ktx_dagster.testing.s3 import moto_s3_server


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("KTX_DATA_DIR", str(root))
    return root


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's server mode: the S3 HTTP protocol on 127.0.0.1, spoken to by real s3fs/boto3."""
    with moto_s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_root(s3_endpoint, monkeypatch):
    """A fresh bucket; returns `s3://bucket/prefix` with KTX_S3_ENDPOINT_URL set."""
    bucket = f"ktx-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    monkeypatch.setenv("KTX_S3_ENDPOINT_URL", s3_endpoint)
    # s3fs caches listings per filesystem instance; tests write and list in quick succession.
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    return f"s3://{bucket}/ktx"

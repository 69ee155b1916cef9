"""Storage settings that are wrong: a data root that is not there, a bucket that does not exist,
no S3 credentials. The code location still loads (the webserver and daemon need not see the
step pods' mount or role); the step that touches the data fails with an error naming the
setting, the path and the fix; nothing of it is stored; other partitions are intact; after
the fix the re-run succeeds. A root no store can serve fails when the code location loads."""

from __future__ import annotations

import uuid

import boto3
import dagster as dg
import pytest

from ktx_dagster import definitions_for, transformation
from ktx_dagster.data_dir import DataDir

SECRET = "wJalrXUtnFEMI-not-a-real-secret-ktx-7Q"  # planted: must never be shown  # pragma: allowlist secret


@transformation(partitions=["a", "b"], format="text")
def notes(context) -> str:
    return f"note {context.partition_key}\n"


def run_partition(key: str, instance) -> dg.ExecuteInProcessResult:
    """As a user runs it: the code location loads (definitions_for from the env), then the run."""
    defs = definitions_for(assets=[notes], deployment="local")
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=instance, partition_key=key, raise_on_error=False)


def step_error(result) -> str:
    failure = next(e for e in result.all_events if e.is_step_failure)
    return failure.event_specific_data.error.to_string()


def all_event_text(result) -> str:
    return "\n".join(str(e) for e in result.all_events)


def clear_s3_clients() -> None:
    # A re-run is a new process with a new S3 client; in one test process, forget the old one.
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.mark.reliability(
    "bad input", case="a data root that does not exist",
    injected="KTX_DATA_DIR pointing at a folder that is not there (a typo of the real root)",
    seen="the step fails: 'data root <path> does not exist (set by KTX_DATA_DIR); nothing was written. ... create it "
         "(mkdir -p <path>) ... if it is a typo, correct the setting'",
    outcome="the code location loads; only that partition fails; the typo'd folder is not created; the real root's "
            "outputs intact; after mkdir the re-run succeeds")
def test_a_data_root_that_does_not_exist_is_refused_not_created(tmp_path, monkeypatch, instance):
    real = tmp_path / "data"
    real.mkdir()
    monkeypatch.setenv("KTX_DATA_DIR", str(real))
    assert run_partition("a", instance).success

    typo = tmp_path / "dta"
    monkeypatch.setenv("KTX_DATA_DIR", str(typo))
    result = run_partition("b", instance)  # loads: the error is the step's
    assert not result.success
    message = step_error(result)
    assert f"data root {typo} does not exist (set by KTX_DATA_DIR)" in message
    assert f"mkdir -p {typo}" in message and "if it is a typo, correct KTX_DATA_DIR" in message
    assert not typo.exists()  # not silently created
    assert sorted(p.name for p in (real / "notes").iterdir()) == ["a.txt"]

    typo.mkdir()  # the fix: this is where the data should live after all
    assert run_partition("b", instance).success
    assert (typo / "notes" / "b.txt").read_text() == "note b\n"


def test_the_unconfigured_default_data_root_is_created_on_first_use(tmp_path, monkeypatch, instance):
    """A fresh checkout: nothing set, no ./data yet; the default root is made, not refused."""
    monkeypatch.delenv("KTX_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert run_partition("a", instance).success
    assert (tmp_path / "data" / "notes" / "a.txt").read_text() == "note a\n"


def test_a_configured_data_root_that_is_missing_is_named_when_reading_inputs(tmp_path, monkeypatch):
    """An asset body listing its inputs under a missing root is told so, not handed an empty list."""
    missing = DataDir(root=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"data root .*nowhere does not exist \(set by the data_dir resource"):
        missing.glob("raw", "*.csv")
    (tmp_path / "nowhere").mkdir()
    assert missing.glob("raw", "*.csv") == []  # an existing root without the folder: no inputs yet


@pytest.mark.parametrize("root", ["ftp://host/data", "s3:///no-bucket"])
def test_a_data_root_no_store_serves_fails_when_the_code_location_loads(root, monkeypatch):
    monkeypatch.setenv("KTX_DATA_DIR", root)
    with pytest.raises(ValueError, match=r"data root .* \(set by KTX_DATA_DIR\)") as raised:
        definitions_for(assets=[notes], deployment="local")
    assert "s3://bucket/prefix" in str(raised.value)


@pytest.mark.parametrize("setting,value", [("KTX_S3_MAX_ATTEMPTS", "0"), ("KTX_S3_READ_TIMEOUT", "soon")])
def test_a_bad_s3_retry_setting_fails_when_the_code_location_loads(setting, value, monkeypatch):
    monkeypatch.setenv("KTX_DATA_DIR", "s3://some-bucket/ktx")
    monkeypatch.setenv(setting, value)
    with pytest.raises(ValueError, match=rf"{setting}='{value}' must be a .*number > 0; unset it for the default"):
        definitions_for(assets=[notes], deployment="local")


@pytest.mark.s3
@pytest.mark.reliability(
    "bad input", case="an S3 bucket that does not exist",
    injected="KTX_DATA_DIR=s3://<a bucket nobody created>/ktx on the loopback S3 endpoint",
    seen="the step fails: 'writing s3://<bucket>/ktx/notes/b.txt: bucket <bucket> does not exist at <endpoint>; it "
         "comes from KTX_DATA_DIR=... create the bucket (on EKS `make eks-infra` ...; elsewhere `aws s3 mb ...`), or "
         "correct KTX_DATA_DIR'",
    outcome="the code location loads; only that partition fails; no bucket is created; the other bucket's outputs "
            "intact; after creating the bucket the re-run succeeds")
def test_an_s3_bucket_that_does_not_exist_is_named_with_its_setting_and_fix(s3_root, s3_endpoint, monkeypatch, instance):
    monkeypatch.setenv("KTX_DATA_DIR", s3_root)
    assert run_partition("a", instance).success

    bucket = f"ktx-missing-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("KTX_DATA_DIR", f"s3://{bucket}/ktx")
    result = run_partition("b", instance)
    assert not result.success
    message = step_error(result)
    assert f"writing s3://{bucket}/ktx/notes/b.txt: bucket '{bucket}' does not exist at {s3_endpoint}" in message
    assert f"it comes from KTX_DATA_DIR=s3://{bucket}/ktx" in message
    assert "make eks-infra" in message and f"aws s3 mb s3://{bucket}" in message
    direct = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    assert bucket not in [b["Name"] for b in direct.list_buckets()["Buckets"]]
    good_bucket = s3_root.removeprefix("s3://").split("/")[0]
    assert [o["Key"] for o in direct.list_objects_v2(Bucket=good_bucket)["Contents"]] == ["ktx/notes/a.txt"]

    direct.create_bucket(Bucket=bucket)  # the fix
    clear_s3_clients()
    assert run_partition("b", instance).success
    assert direct.get_object(Bucket=bucket, Key="ktx/notes/b.txt")["Body"].read() == b"note b\n"


def _without_credentials(monkeypatch, tmp_path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # not on EC2: don't wait for its metadata service
    clear_s3_clients()


@pytest.mark.s3
@pytest.mark.reliability(
    "bad input", case="missing S3 credentials",
    injected="no AWS keys in env, no profile files, no pod role (and, second, only AWS_SECRET_ACCESS_KEY set)",
    seen="the step fails: 'writing s3://<bucket>/ktx/notes/b.txt: no usable AWS credentials (looked at env: "
         "AWS_ACCESS_KEY_ID not set, ...; profile: ...; pod role: IRSA AWS_ROLE_ARN not set, ...) ... ktx-step service "
         "account ... export AWS_PROFILE=...'; no secret value anywhere in the run's events",
    outcome="the code location loads; only that partition fails; the partition stored before intact; with "
            "credentials back the re-run succeeds")
def test_missing_s3_credentials_name_the_sources_looked_at_and_the_fix(s3_root, s3_endpoint, monkeypatch, tmp_path,
                                                                       instance):
    monkeypatch.setenv("KTX_DATA_DIR", s3_root)
    assert run_partition("a", instance).success

    with monkeypatch.context() as m:
        _without_credentials(m, tmp_path)
        result = run_partition("b", instance)
        assert not result.success
        message = step_error(result)
        assert f"writing {s3_root}/notes/b.txt: no usable AWS credentials" in message
        for source in ("AWS_ACCESS_KEY_ID not set", "AWS_SECRET_ACCESS_KEY not set", "AWS_PROFILE not set",
                       f"{tmp_path / 'no-credentials'} (missing)", "IRSA AWS_ROLE_ARN not set",
                       "AWS_WEB_IDENTITY_TOKEN_FILE not set", "EKS Pod Identity AWS_CONTAINER_CREDENTIALS_FULL_URI"):
            assert source in message
        assert "ktx-step service account" in message and "export AWS_PROFILE=" in message

        m.setenv("AWS_SECRET_ACCESS_KEY", SECRET)  # half a key pair: still unusable, and never shown
        clear_s3_clients()
        result = run_partition("b", instance)
        assert not result.success
        message = step_error(result)
        assert "AWS_SECRET_ACCESS_KEY set" in message and "AWS_ACCESS_KEY_ID not set" in message
        assert SECRET not in message and SECRET not in all_event_text(result)

    direct = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    bucket = s3_root.removeprefix("s3://").split("/")[0]
    assert [o["Key"] for o in direct.list_objects_v2(Bucket=bucket)["Contents"]] == ["ktx/notes/a.txt"]

    clear_s3_clients()  # credentials are back (the monkeypatch context restored them)
    assert run_partition("b", instance).success
    assert direct.get_object(Bucket=bucket, Key="ktx/notes/b.txt")["Body"].read() == b"note b\n"

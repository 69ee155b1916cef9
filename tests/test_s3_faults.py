"""S3 faults injected on the wire: a fault proxy (ktx_dagster.testing.s3_faults) between the
code and the loopback moto server answers some requests with 5xx / SlowDown, delays them or
cuts uploads mid-body. Transient faults are retried with backoff and every partition is stored
exactly once; a permanent fault fails only its partition, with an error naming the key and the
fix; a cut upload never leaves a partial object. What the bucket holds is read straight from
moto, past the proxy."""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass

import boto3
import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest

from ktx_dagster import LazyPartitions, Upstream, transformation
from ktx_dagster.io_manager import KtxIOManager, data_resources
from ktx_dagster.testing.s3_faults import Fault, FaultyS3Proxy, faulty_s3_proxy

pytestmark = pytest.mark.s3

KEYS = ["p1", "p2", "p3", "p4"]


def frame_for(key: str, version: int = 1) -> pd.DataFrame:
    i = KEYS.index(key) + 1 if key in KEYS else 9
    return pd.DataFrame({"part": [key] * (i + 2), "v": [version * 100 + i * 10 + n for n in range(i + 2)]})


@dataclass
class Bucket:
    name: str
    direct: object  # a boto3 client on moto itself, past the proxy

    def objects(self) -> dict[str, bytes]:
        listed = self.direct.list_objects_v2(Bucket=self.name).get("Contents", [])
        return {o["Key"]: self.direct.get_object(Bucket=self.name, Key=o["Key"])["Body"].read() for o in listed}

    def uploads_in_progress(self) -> list:
        return self.direct.list_multipart_uploads(Bucket=self.name).get("Uploads", [])


@pytest.fixture
def proxy(s3_endpoint):
    with faulty_s3_proxy(s3_endpoint) as p:
        yield p


@pytest.fixture
def bucket(s3_endpoint, proxy, monkeypatch) -> Bucket:
    """A fresh bucket; the code under test reaches it only through the proxy."""
    name = f"ktx-faults-{uuid.uuid4().hex[:12]}"
    direct = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    direct.create_bucket(Bucket=name)
    monkeypatch.setenv("KTX_S3_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("KTX_DATA_DIR", f"s3://{name}/ktx")
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    return Bucket(name, direct)


@transformation(partitions=KEYS)
def frames(context) -> pd.DataFrame:
    return frame_for(context.partition_key)


@transformation(inputs={"frames": Upstream(frames, mapping=dg.AllPartitionMapping())})
def totals(frames: LazyPartitions) -> dict:
    return {key: int(frames.load(key)["v"].sum()) for key in frames}


def step_error(result) -> str:
    failure = next(e for e in result.all_events if e.is_step_failure)
    return failure.event_specific_data.error.to_string()


TRANSIENT = {
    "5xx": [
        Fault("error", status=503, code="SlowDown", method="PUT", times=2),
        Fault("error", status=500, code="InternalError", method="PUT", path="/p3", times=1),
        Fault("error", status=502, code="BadGateway", method="GET", path="list-type", times=1),
        Fault("error", status=503, code="SlowDown", method="GET", path=r"frames/p2\.parquet$", times=1),
    ],
    "slow": [
        Fault("delay", seconds=3, method="PUT", times=1),  # past KTX_S3_READ_TIMEOUT: timed out, retried
        Fault("delay", seconds=0.5, method="GET", path=r"\.parquet$", times=2),  # slow, within the timeout
    ],
    "cut": [
        Fault("cut", after_bytes=200, method="PUT", times=2),
    ],
}


@pytest.mark.parametrize("kind", [
    pytest.param("5xx", marks=pytest.mark.reliability(
        "fault", case="S3 5xx errors and SlowDown throttling",
        injected="the fault proxy answers PUTs, a LIST and a GET with 503 SlowDown, 500 InternalError, 502",
        seen="nothing but slower steps; botocore's standard-mode retries (attempt=2 on the wire) with backoff",
        outcome="every partition and the downstream asset stored exactly once, contents correct, no temp objects")),
    pytest.param("slow", marks=pytest.mark.reliability(
        "fault", case="slow S3 responses",
        injected="the proxy holds a PUT past KTX_S3_READ_TIMEOUT=1 and delays GETs by 0.5 s",
        seen="nothing but slower steps: the stalled PUT times out and is retried",
        outcome="every partition and the downstream asset stored exactly once, contents correct")),
    pytest.param("cut", marks=pytest.mark.reliability(
        "fault", case="an S3 upload cut mid-body (transient)",
        injected="the proxy forwards 200 bytes of two PUTs to moto, then drops both connections",
        seen="nothing but slower steps: the PUTs are sent again",
        outcome="every object whole: no truncated or partial object, nothing duplicated")),
])
def test_transient_s3_faults_are_retried_and_nothing_is_duplicated_or_lost(kind, bucket, proxy, instance, monkeypatch):
    if kind == "slow":
        monkeypatch.setenv("KTX_S3_READ_TIMEOUT", "1")
    faults = [proxy.inject(Fault(**vars(f))) for f in TRANSIENT[kind]]
    resources = data_resources()
    for key in KEYS:
        assert dg.materialize([frames], partition_key=key, resources=resources, instance=instance).success
    result = dg.materialize([frames, totals], selection=[totals], resources=resources, instance=instance)
    assert result.success

    assert all(f.times == 0 for f in faults), [f for f in faults if f.times]  # every fault hit a request
    # each failed request was sent again, and got through (a delay within the timeout is only slow)
    faulted = [s for s in proxy.seen if s.action not in ("pass", "delay 0.5s")]
    for seen in faulted:
        assert any(s.action == "pass" and s.method == seen.method and s.path == seen.path for s in proxy.seen)
    if kind != "cut":  # botocore's own retries (a cut connection is also re-sent below it, by aiohttp)
        assert any(s.attempt.startswith("attempt=2") for s in proxy.seen)

    stored = bucket.objects()
    assert sorted(stored) == sorted([f"ktx/frames/{k}.parquet" for k in KEYS] + ["ktx/totals.json"])
    for key in KEYS:
        pd.testing.assert_frame_equal(pq.read_table(io.BytesIO(stored[f"ktx/frames/{key}.parquet"])).to_pandas(),
                                      frame_for(key))
    assert json.loads(stored["ktx/totals.json"]) == {k: int(frame_for(k)["v"].sum()) for k in KEYS}
    assert bucket.uploads_in_progress() == []
    records = instance.fetch_materializations(dg.AssetKey("frames"), limit=100).records
    assert sorted(r.partition_key for r in records) == KEYS  # one materialization per partition


@pytest.mark.parametrize("status,code", [
    pytest.param(500, "InternalError", marks=pytest.mark.reliability(
        "fault", case="S3 failing every request (500)",
        injected="after p1 is stored, the proxy answers every request with 500 InternalError",
        seen="p2 fails: 'writing s3://<bucket>/ktx/frames/p2.parquet: S3 at <endpoint> kept failing (InternalError) "
             "through 3 attempts per call with backoff (KTX_S3_MAX_ATTEMPTS) ... re-run the partition'",
        outcome="only p2 fails, after exactly KTX_S3_MAX_ATTEMPTS tries; p1 intact; no p2 object; re-run succeeds")),
    pytest.param(403, "AccessDenied", marks=pytest.mark.reliability(
        "fault", case="S3 refusing access (403)",
        injected="after p1 is stored, the proxy answers every request with 403 AccessDenied",
        seen="p2 fails: 'writing s3://<bucket>/ktx/frames/p2.parquet: refused by S3 ... (AccessDenied) for <credential "
             "source> ... s3:PutObject ... terraform/iam.tf'",
        outcome="only p2 fails, at once (not retried); p1 intact; no p2 object; re-run after the fix succeeds")),
])
def test_a_permanent_s3_failure_fails_only_its_partition_with_a_clear_error(status, code, bucket, proxy, instance,
                                                                            monkeypatch):
    monkeypatch.setenv("KTX_S3_MAX_ATTEMPTS", "3")
    resources = data_resources()
    assert dg.materialize([frames], partition_key="p1", resources=resources, instance=instance).success
    p1_before = bucket.objects()["ktx/frames/p1.parquet"]

    proxy.inject(Fault("error", status=status, code=code, times=None))
    result = dg.materialize([frames], partition_key="p2", resources=resources, instance=instance, raise_on_error=False)
    assert not result.success
    message = step_error(result)
    assert f"s3://{bucket.name}/ktx/frames/p2.parquet" in message and "re-run the partition" in message
    puts = proxy.requests("PUT", "/frames/p2")
    if status == 500:
        assert "kept failing (InternalError) through 3 attempts" in message and "KTX_S3_MAX_ATTEMPTS" in message
        assert [s.attempt.split(";")[0] for s in puts] == ["attempt=1", "attempt=2", "attempt=3"]
    else:
        assert "(AccessDenied)" in message and "s3:PutObject" in message and "terraform/iam.tf" in message
        assert len(puts) == 1  # a refusal is not retried
    assert bucket.objects() == {"ktx/frames/p1.parquet": p1_before}

    proxy.clear()  # the store recovers, or the permission is granted
    assert dg.materialize([frames], partition_key="p2", resources=resources, instance=instance).success
    assert sorted(bucket.objects()) == ["ktx/frames/p1.parquet", "ktx/frames/p2.parquet"]
    assert bucket.objects()["ktx/frames/p1.parquet"] == p1_before


def _overwrite_cut_mid_upload(bucket: Bucket, proxy: FaultyS3Proxy, instance) -> tuple[bytes, bytes | None, list[str], str]:
    """p stored, then a re-run whose every upload is cut after half its body: (the stored bytes
    before, after (None if gone), the bucket's keys, the step's error)."""
    state = {"value": frame_for("p", version=1)}

    @transformation(partitions=["p"])
    def fragile(context) -> pd.DataFrame:
        return state["value"]

    resources = data_resources()
    assert dg.materialize([fragile], partition_key="p", resources=resources, instance=instance).success
    key = "ktx/fragile/p.parquet"
    before = bucket.objects()[key]
    state["value"] = frame_for("p", version=2)
    proxy.inject(Fault("cut", after_bytes=len(before) // 2, method="PUT", path="/fragile/p", times=None))
    result = dg.materialize([fragile], partition_key="p", resources=resources, instance=instance, raise_on_error=False)
    assert not result.success
    assert proxy.requests("PUT", "/fragile/p")[-1].action.startswith("cut")  # the uploads did go out, cut
    stored = bucket.objects()
    return before, stored.get(key), sorted(stored), step_error(result)


@pytest.mark.reliability(
    "fault", case="an S3 upload cut mid-body (every attempt)",
    injected="re-running a stored partition while the proxy forwards half of every PUT's body to moto, then drops both "
             "connections",
    seen="the step fails: 'writing s3://<bucket>/ktx/fragile/p.parquet: S3 ... kept failing (ConnectionClosedError) ... "
         "Nothing is stored under that key from this run ... re-run the partition'",
    outcome="the previous object intact byte for byte; no partial object, temp object or open multipart upload; "
            "the re-run completes")
def test_an_upload_cut_mid_body_leaves_the_previous_object_intact(bucket, proxy, instance, monkeypatch):
    monkeypatch.setenv("KTX_S3_MAX_ATTEMPTS", "2")  # s3fs's rounds x botocore's attempts: keep it short
    before, after, keys, message = _overwrite_cut_mid_upload(bucket, proxy, instance)
    assert after == before
    assert keys == ["ktx/fragile/p.parquet"] and bucket.uploads_in_progress() == []
    assert "ktx/fragile/p.parquet" in message and "kept failing (ConnectionClosedError)" in message

    proxy.clear()
    rerun = data_resources()

    @transformation(partitions=["p"])
    def fragile(context) -> pd.DataFrame:
        return frame_for("p", version=2)

    assert dg.materialize([fragile], partition_key="p", resources=rerun, instance=instance).success
    stored = pq.read_table(io.BytesIO(bucket.objects()["ktx/fragile/p.parquet"])).to_pandas()
    pd.testing.assert_frame_equal(stored, frame_for("p", version=2))


def test_a_writer_that_deletes_before_uploading_would_fail_the_test_above(bucket, proxy, instance, monkeypatch):
    """The cut test can fail: S3 never shows half a PUT, but a writer that clears the old object
    before uploading the new one (as a "remove stale outputs first" step would) loses it."""
    monkeypatch.setenv("KTX_S3_MAX_ATTEMPTS", "2")
    real = KtxIOManager._write_atomic

    def delete_then_upload(self, obj, fmt, path):
        if path.fs.exists(path.path):
            path.fs.rm_file(path.path)
        return real(self, obj, fmt, path)

    monkeypatch.setattr(KtxIOManager, "_write_atomic", delete_then_upload)
    before, after, _, _ = _overwrite_cut_mid_upload(bucket, proxy, instance)
    assert after != before


PART = 5 * 2**20  # S3's (and moto's) smallest part but the last


@pytest.mark.parametrize("times", [
    pytest.param(1, marks=pytest.mark.reliability(
        "fault", case="a part of a multipart upload cut mid-body (transient)",
        injected="a 12 MiB output uploaded in 5 MiB parts; the proxy forwards 1 MiB of part 2, then drops both "
                 "connections",
        seen="nothing but a slower step: the part is sent again",
        outcome="the object complete and byte-identical; no multipart upload left open")),
    pytest.param(None, marks=pytest.mark.reliability(
        "fault", case="a part of a multipart upload cut mid-body (every attempt)",
        injected="re-running a stored partition as a 12 MiB multipart upload whose part 2 is cut after 1 MiB every time",
        seen="the step fails: 'writing s3://<bucket>/ktx/big/p.bin: S3 ... kept failing (ConnectionClosedError) ...'",
        outcome="the previous object intact; the multipart upload aborted (none left open, nothing visible); the "
                "re-run completes")),
])
def test_a_multipart_upload_cut_mid_part_never_shows_a_partial_object(times, bucket, proxy, instance, monkeypatch):
    monkeypatch.setenv("KTX_S3_MAX_ATTEMPTS", "2")
    monkeypatch.setattr(KtxIOManager, "multipart_chunksize", PART)
    payloads = {"old": b"old output", "new": bytes(range(256)) * (12 * 2**20 // 256)}
    state = {"value": payloads["old"]}

    @transformation(partitions=["p"])
    def big(context) -> bytes:
        return state["value"]

    resources = data_resources()
    assert dg.materialize([big], partition_key="p", resources=resources, instance=instance).success
    state["value"] = payloads["new"]
    proxy.inject(Fault("cut", after_bytes=2**20, method="PUT", path=r"/big/p\.bin\?.*partNumber=2", times=times))
    result = dg.materialize([big], partition_key="p", resources=resources, instance=instance, raise_on_error=False)

    assert proxy.requests("POST", r"/big/p\.bin\?uploads")  # it did go up as a multipart upload
    assert [s.action for s in proxy.requests("PUT", "partNumber=2")][0].startswith("cut")
    assert bucket.uploads_in_progress() == []
    if times == 1:
        assert result.success
        assert bucket.objects() == {"ktx/big/p.bin": payloads["new"]}
        return
    assert not result.success and "ktx/big/p.bin" in step_error(result)
    assert bucket.objects() == {"ktx/big/p.bin": payloads["old"]}
    proxy.clear()
    assert dg.materialize([big], partition_key="p", resources=resources, instance=instance).success
    assert bucket.objects() == {"ktx/big/p.bin": payloads["new"]}

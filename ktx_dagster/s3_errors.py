"""What a failed S3 call means to the user: the bucket and key, the setting that chose them, the fix.

s3fs and botocore say "Unable to locate credentials", "The specified bucket does not exist" or
"[Errno 5] ... (reached max retries: 4)": true, but neither which setting led there nor what to
do. `s3_failures_explained` wraps one storage call and re-raises the failures a user can act on
as an `S3StorageError` (the original chained as its cause); anything else passes unchanged.
Credential sources are named, never their values.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ktx_dagster.data_dir import DEFAULT_S3_MAX_ATTEMPTS, root_setting

RERUN = "then re-run the partition (ktx materialize --missing, or its run's re-execution in the UI)"
THROTTLING_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"}


class S3StorageError(OSError):
    """A storage call the user has to act on: credentials, bucket, permissions, or a store that stays down."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _client_error(exc: BaseException) -> dict[str, Any] | None:
    for err in _chain(exc):
        response = getattr(err, "response", None)
        if isinstance(response, dict) and "Error" in response:
            return response
    return None


def _is(exc: BaseException, *names: str) -> bool:
    return any(type(err).__name__ in names for err in _chain(exc))


def _set(name: str) -> str:
    return f"{name} {'set' if os.environ.get(name) else 'not set'}"


def credential_sources() -> str:
    """Where botocore looked for credentials, by name only (never a value)."""
    profile = os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE")
    credentials_file = os.path.expanduser(os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"))
    config_file = os.path.expanduser(os.environ.get("AWS_CONFIG_FILE", "~/.aws/config"))

    def exists(path: str) -> str:
        return f"{path} ({'present' if os.path.isfile(path) else 'missing'})"

    metadata = ("disabled by AWS_EC2_METADATA_DISABLED" if os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true"
                else "no answer")
    return (
        f"env: {_set('AWS_ACCESS_KEY_ID')}, {_set('AWS_SECRET_ACCESS_KEY')}; "
        f"profile: {('AWS_PROFILE=' + profile) if profile else 'AWS_PROFILE not set (profile default)'} in "
        f"{exists(credentials_file)} and {exists(config_file)}; "
        f"pod role: IRSA {_set('AWS_ROLE_ARN')}, {_set('AWS_WEB_IDENTITY_TOKEN_FILE')}, "
        f"EKS Pod Identity {_set('AWS_CONTAINER_CREDENTIALS_FULL_URI')}; instance metadata: {metadata}"
    )


def credentials_in_use() -> str:
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        return "the keys in env AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
    if os.environ.get("AWS_PROFILE"):
        return f"profile AWS_PROFILE={os.environ['AWS_PROFILE']}"
    if os.environ.get("AWS_ROLE_ARN"):
        return "the pod role in AWS_ROLE_ARN (IRSA)"
    return "the default credential chain"


def _attempts() -> str:
    raw = os.environ.get("KTX_S3_MAX_ATTEMPTS") or os.environ.get("AWS_MAX_ATTEMPTS") or str(DEFAULT_S3_MAX_ATTEMPTS)
    return raw.strip()


def _nothing_partial(doing: str) -> str:
    if doing == "writing":
        return ("Nothing is stored under that key from this run (an S3 object appears whole or not at all); "
                "other partitions are untouched. ")
    return "Other partitions are untouched. "


def explain(exc: BaseException, url: str, doing: str, root: str, endpoint: str | None) -> S3StorageError | None:
    """An S3StorageError saying what `exc` means for `doing` `url`, or None if it is not one we explain."""
    bucket = url.removeprefix("s3://").split("/", 1)[0]
    setting = root_setting(root) or "KTX_DATA_DIR"
    where = f"at {endpoint}" if endpoint else "in AWS S3"
    if _is(exc, "NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return S3StorageError(
            f"{doing} {url}: no usable AWS credentials (looked at {credential_sources()}); nothing was "
            f"stored. Fix: on EKS run the step pods under the ktx-step service account, annotated with the "
            f"pod role (terraform output pod_role_arn; make eks-deploy applies it); elsewhere export "
            f"AWS_PROFILE=<profile>, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (an S3-compatible "
            f"store's own keys go there too); {RERUN}."
        )
    response = _client_error(exc)
    code = (response or {}).get("Error", {}).get("Code", "")
    status = (response or {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code == "NoSuchBucket":
        return S3StorageError(
            f"{doing} {url}: bucket {bucket!r} does not exist {where}; it comes from {setting}={root}. "
            f"Nothing was stored. Fix: create the bucket (on EKS `make eks-infra` creates it and "
            f"`terraform -chdir=terraform output -raw data_dir` prints the KTX_DATA_DIR to use; elsewhere "
            f"`aws s3 mb s3://{bucket}`), or correct {setting}; {RERUN}."
        )
    if code in ("AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch") or status == 403:
        return S3StorageError(
            f"{doing} {url}: refused by S3 {where} ({code or 'HTTP 403'}) for {credentials_in_use()}; "
            f"nothing was stored. Fix: let that role or user s3:GetObject, s3:PutObject, s3:DeleteObject "
            f"and s3:ListBucket on bucket {bucket!r} (terraform/iam.tf grants them to the pod role), or "
            f"correct {setting}={root} if it names someone else's bucket; {RERUN}."
        )
    transient = (status is not None and status >= 500) or code in THROTTLING_CODES
    dropped = _is(exc, "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError", "ServerDisconnectedError",
                  "ClientPayloadError", "IncompleteRead")
    if transient or dropped:
        what = f"{code or 'HTTP ' + str(status)}" if transient else type(exc).__name__
        return S3StorageError(
            f"{doing} {url}: S3 {where} kept failing ({what}) through {_attempts()} attempts per call with "
            f"backoff (KTX_S3_MAX_ATTEMPTS); the store is down or throttling. {_nothing_partial(doing)}"
            f"Fix: wait for the store to recover, or raise KTX_S3_MAX_ATTEMPTS for longer "
            f"outages; {RERUN}."
        )
    if _is(exc, "EndpointConnectionError"):
        return S3StorageError(
            f"{doing} {url}: cannot connect to S3 {where}. Fix: check KTX_S3_ENDPOINT_URL (or "
            f"AWS_ENDPOINT_URL) and the network; {RERUN}."
        )
    return None


@contextmanager
def s3_failures_explained(url: str, doing: str, root: str, endpoint: str | None) -> Iterator[None]:
    """Run one S3 call; failures a user must act on become an S3StorageError naming the fix."""
    try:
        yield
    except S3StorageError:
        raise
    except Exception as exc:
        explained = explain(exc, url, doing, root, endpoint)
        if explained is None:
            raise
        raise explained from exc

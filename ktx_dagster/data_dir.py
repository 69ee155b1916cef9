"""The one data root every task reads and writes under: a local folder or s3://bucket/prefix.

`KTX_DATA_DIR` sets it (default `./data`; `/mnt/data` inside Minikube pods, `s3://...` on
EKS). S3 uses the standard AWS credential chain (env, profile, IRSA / Pod Identity); an
S3-compatible store is reached with `KTX_S3_ENDPOINT_URL` (or AWS's own `AWS_ENDPOINT_URL`).

A local root that does not exist is created only when it is the unconfigured default
(`./data`: a fresh checkout works); a root someone set (KTX_DATA_DIR, `DataDir(root=...)`,
`data_dir:` in defs.yaml) must exist, so a typo fails the step instead of scattering outputs
into a new folder. That, the bucket and the credentials are checked when a step touches the
data, not when the code location loads: the webserver and daemon need not see the step pods'
mount or role.

S3 retries (`s3_storage_options`): botocore's "standard" mode, `KTX_S3_MAX_ATTEMPTS` attempts
(default 5, counting the first) with jittered exponential backoff (rand x 2^attempt s, at most
20 s), for 5xx, SlowDown and other throttling, timeouts and dropped connections; a retry quota
stops a client retrying into a store that keeps failing. "standard" rather than "adaptive":
adaptive adds a client-side rate limiter that learns from throttling over many requests of one
long-lived client, while a step is a short process (one partition) making a handful of
requests, so it would never learn anything and the state dies with the pod. Not botocore's own
default here either, "legacy": it has neither the retry quota nor a cap on the backoff. s3fs wraps every
call in up to 5 rounds of its own (`S3FileSystem.retries`, not settable per filesystem) for
dropped connections, timeouts and SlowDown that outlast botocore's attempts, so a store that
stays down or throttles is given up on after at most 5 x 5 attempts (about a minute of backoff);
other 5xx errors after 5, and 4xx errors (403, NoSuchBucket) at once. Below botocore, aiohttp
sends an idempotent request (PUT, GET) once more when a kept-alive connection drops under it.
`KTX_S3_READ_TIMEOUT` (seconds, default s3fs's 15) bounds how long a response may stall before
it counts as failed and is retried. AWS's own `AWS_RETRY_MODE` / `AWS_MAX_ATTEMPTS` are honoured
when set.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from pydantic import Field, field_validator
from upath import UPath

DEFAULT_DATA_DIR = "./data"
DEFAULT_S3_MAX_ATTEMPTS = 5


class DataRootMissing(FileNotFoundError):
    """A configured local data root that does not exist (never created silently: a typo?)."""


def _setting_number(name: str, default: float | None, kind: type) -> Any:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value <= 0:
        raise ValueError(f"{name}={raw!r} must be a {'whole ' if kind is int else ''}number > 0; "
                         f"unset it for the default ({default if default is not None else 'the client default'})")
    return value


def s3_retry_config() -> dict[str, Any]:
    """botocore client config: retry mode and attempts, and the read timeout (see module doc)."""
    attempts = _setting_number("KTX_S3_MAX_ATTEMPTS", None, int) or _setting_number(
        "AWS_MAX_ATTEMPTS", DEFAULT_S3_MAX_ATTEMPTS, int)
    config: dict[str, Any] = {
        "retries": {"mode": os.environ.get("AWS_RETRY_MODE") or "standard", "total_max_attempts": attempts},
    }
    read_timeout = _setting_number("KTX_S3_READ_TIMEOUT", None, float)
    if read_timeout:
        config["read_timeout"] = read_timeout
    return config


def s3_storage_options(endpoint_url: str | None = None) -> dict[str, Any]:
    endpoint = endpoint_url or os.environ.get("KTX_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
    options: dict[str, Any] = {"config_kwargs": s3_retry_config()}
    if endpoint:
        options["client_kwargs"] = {"endpoint_url": endpoint}
    return options


def check_root_syntax(root: str, setting: str = "KTX_DATA_DIR") -> None:
    """Fail on a root no store can serve (checked when the code location loads)."""
    if root.startswith("s3://"):
        if not root[len("s3://"):].split("/", 1)[0]:
            raise ValueError(f"data root {root!r} (set by {setting}) names no bucket; write s3://bucket/prefix")
    elif "://" in root and not root.startswith("file://"):
        raise ValueError(f"data root {root!r} (set by {setting}): only local paths and s3://bucket/prefix "
                         f"are supported; correct {setting}")


def data_root(root: str | None = None, endpoint_url: str | None = None) -> UPath:
    """Resolve the data root; local paths become absolute so worker processes agree on them."""
    root = root or os.environ.get("KTX_DATA_DIR") or DEFAULT_DATA_DIR
    check_root_syntax(root)
    if root.startswith("s3://"):
        return UPath(root.rstrip("/"), **s3_storage_options(endpoint_url))
    return UPath(os.path.abspath(root.removeprefix("file://")))


def root_setting(root: str) -> str | None:
    """The setting that chose `root`, as a user would look for it; None when it is the default."""
    env = os.environ.get("KTX_DATA_DIR")
    if env and env.rstrip("/") == str(root).rstrip("/"):
        return "KTX_DATA_DIR"
    if not env and str(root) in (DEFAULT_DATA_DIR, os.path.abspath(DEFAULT_DATA_DIR)):
        return None
    return "the data_dir resource (DataDir(root=...), or data_dir: in defs.yaml; env KTX_DATA_DIR overrides both)"


def ensure_local_root(path: UPath, root: str) -> None:
    """Create the default root on first use (a fresh checkout); refuse a configured one that is missing."""
    folder = path.path
    if os.path.isdir(folder):
        return
    setting = root_setting(root)
    if setting is None:
        os.makedirs(folder, exist_ok=True)
        return
    raise DataRootMissing(
        f"data root {folder} does not exist (set by {setting}); nothing was written. If that is "
        f"where the data should live, create it (mkdir -p {folder}) and put the inputs there; if "
        f"it is a typo, correct {setting.split(' (')[0]}. A configured root is never created on the fly, so "
        f"a typo cannot scatter outputs into a new folder."
    )


class DataDir(dg.ConfigurableResource):
    """Where raw inputs are found; asset bodies use it to list and read files they don't own."""

    root: str = Field(
        default_factory=lambda: os.environ.get("KTX_DATA_DIR", DEFAULT_DATA_DIR),
        description="Local path or s3://bucket/prefix (env KTX_DATA_DIR).",
        validate_default=True,  # KTX_DATA_DIR=ftp://... fails when the code location loads, too
    )
    endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (env KTX_S3_ENDPOINT_URL)."
    )

    @field_validator("root")
    @classmethod
    def _root_is_servable(cls, root: str) -> str:
        # A scheme no store serves fails when the code location loads; whether the root
        # exists is the step's business (the webserver need not see the pods' mount or role).
        if not isinstance(root, dg.EnvVar):
            check_root_syntax(root, setting=root_setting(root) or "default")
            if root.startswith("s3://"):
                s3_retry_config()  # a typo in KTX_S3_MAX_ATTEMPTS / KTX_S3_READ_TIMEOUT, too
        return root

    @property
    def path(self) -> UPath:
        return data_root(self.root, self.endpoint_url)

    def __truediv__(self, relative: str) -> UPath:
        return self.path / relative

    def glob(self, relative_dir: str, pattern: str) -> list[UPath]:
        """Files in `relative_dir` matching `pattern`, sorted by name (empty if the dir is absent;
        an error naming the setting if the whole data root is)."""
        root = self.path
        if root.protocol in ("", "file", "local") and not os.path.isdir(root.path) and root_setting(self.root):
            ensure_local_root(root, self.root)
        folder = root / relative_dir
        try:
            return sorted((p for p in folder.glob(pattern) if p.is_file()), key=lambda p: p.name)
        except FileNotFoundError:
            return []

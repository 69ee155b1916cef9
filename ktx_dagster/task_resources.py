"""What one task (one partition's step) needs from the machine that runs it.

kube-transform put `memory` and `cpu` on every job; here they live on the transformation and
travel with its asset as op tags, in the standard `dagster-k8s/config` shape, so the
Kubernetes executor turns them into pod requests and limits without any code of ours and the
local executor simply ignores them.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping, Sequence

# Kubernetes resource.Quantity: a signed decimal number (ASCII digits) with one optional suffix,
# binary SI, decimal SI or a decimal exponent ("1e3"; never an exponent and a suffix together).
_QUANTITY = re.compile(r"(?P<num>[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+))"
                       r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?")
_MAX_QUANTITY = Decimal(2**63 - 1)  # Kubernetes clamps larger quantities to this
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": Decimal(10**3),
            "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15),
            "E": Decimal(10**18)}

K8S_CONFIG_TAG = "dagster-k8s/config"
TRANSFORMATION_TAG = "ktx/transformation"
MEMORY_GROWTH_TAG = "ktx/memory-growth"  # retry after an OOM kill with memory x this per attempt
MAX_MEMORY_TAG = "ktx/max-memory"  # ... but never more than this
EXPECTED_DURATION_TAG = "ktx/expected-duration"  # seconds; a step running longer is told once
STRAGGLERS_TOLD_BY_ENV = "KTX_STRAGGLERS_TOLD_BY"  # "executor" in step pods: the executor tells them


class TaskResourcesError(ValueError):
    """A transformation declared resources Kubernetes would reject."""


def parse_quantity(value: str | int | float, *, field_name: str, owner: str = "") -> Decimal:
    """Parse a Kubernetes quantity ('250Mi', '200m', '1.5', '2Gi') into base units.

    Raises TaskResourcesError naming the transformation, the field and a valid example.
    """
    where = f"transformation {owner!r}: " if owner else ""
    examples = {"cpu": "'200m', '1', '1.5'", "memory": "'250Mi', '4Gi', '1500M'"}.get(
        field_name, "'250Mi', '1Gi'"
    )
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TaskResourcesError(
            f"{where}{field_name}={value!r} is not a Kubernetes quantity; use a string like {examples}"
        )
    text = str(value)  # unstripped: the pod spec gets the value as written, and Kubernetes takes no blanks
    match = _QUANTITY.fullmatch(text)
    if not match:
        hint = ""
        if re.match(r"^\d+(\.\d+)?\s*(mb|gb|kb|MB|GB|KB|mi|gi|Mb|Gb)$", text):
            hint = " (Kubernetes spells binary units 'Mi'/'Gi', decimal ones 'M'/'G')"
        raise TaskResourcesError(
            f"{where}{field_name}={value!r} is not a Kubernetes quantity{hint}; use e.g. {examples}"
        )
    suffix = match.group("suffix") or ""
    exponent = suffix[1:] if suffix[:1] in ("e", "E") and suffix not in _BINARY else ""
    try:
        number = Decimal(match.group("num") + (f"e{exponent}" if exponent else ""))
    except InvalidOperation as exc:  # pragma: no cover - the regex already rules this out
        raise TaskResourcesError(f"{where}{field_name}={value!r}: {exc}") from exc
    if suffix in _BINARY:
        number *= _BINARY[suffix]
    elif suffix and not exponent:
        number *= _DECIMAL[suffix]
    if number <= 0:
        raise TaskResourcesError(f"{where}{field_name}={value!r} must be greater than zero; use e.g. {examples}")
    return min(number, _MAX_QUANTITY)


@dataclass(frozen=True)
class TaskResources:
    """Per-task requests. Limits equal requests (Guaranteed QoS) unless `memory_limit` is set.

    cpu / memory / ephemeral_storage are Kubernetes quantity strings; gpu a whole number of
    `nvidia.com/gpu`; node_selector and tolerations go to the pod spec unchanged.
    """

    cpu: str = "500m"
    memory: str = "1Gi"
    memory_limit: str | None = None
    ephemeral_storage: str | None = None
    gpu: int = 0
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    # Retry with more memory (Kubernetes): an attempt after an OOM kill asks for memory (and
    # its limit) x memory_growth per attempt, at most max_memory (default 8x the request).
    memory_growth: float | None = None
    max_memory: str | None = None
    # A step running longer than this (seconds or a timedelta) is told once in the run's log.
    expected_duration: float | dt.timedelta | None = None
    owner: str = ""

    def __post_init__(self) -> None:
        cpu = parse_quantity(self.cpu, field_name="cpu", owner=self.owner)
        if cpu < Decimal("0.001"):
            raise TaskResourcesError(
                f"transformation {self.owner!r}: cpu={self.cpu!r} is below 1m, the smallest "
                "CPU request Kubernetes accepts; use e.g. '100m'"
            )
        memory = parse_quantity(self.memory, field_name="memory", owner=self.owner)
        if self.memory_limit is not None:
            limit = parse_quantity(self.memory_limit, field_name="memory_limit", owner=self.owner)
            if limit < memory:
                raise TaskResourcesError(
                    f"transformation {self.owner!r}: memory_limit={self.memory_limit!r} is below "
                    f"memory={self.memory!r}; a limit must be at least the request"
                )
        if self.ephemeral_storage is not None:
            parse_quantity(self.ephemeral_storage, field_name="ephemeral_storage", owner=self.owner)
        if self.memory_growth is not None:
            if isinstance(self.memory_growth, bool) or not isinstance(self.memory_growth, (int, float)) \
                    or not 1 < self.memory_growth <= 16:
                raise TaskResourcesError(
                    f"transformation {self.owner!r}: memory_growth={self.memory_growth!r} must be a number "
                    "above 1 and at most 16, e.g. 2.0 (each retry after an OOM kill asks for twice as much)"
                )
        if self.max_memory is not None:
            if self.memory_growth is None:
                raise TaskResourcesError(
                    f"transformation {self.owner!r}: max_memory={self.max_memory!r} caps memory_growth, "
                    "which is not set; give memory_growth=2.0 (for example) or drop max_memory"
                )
            cap = parse_quantity(self.max_memory, field_name="max_memory", owner=self.owner)
            if cap < memory:
                raise TaskResourcesError(
                    f"transformation {self.owner!r}: max_memory={self.max_memory!r} is below "
                    f"memory={self.memory!r}; the cap must be at least the first request"
                )
        self.expected_seconds  # noqa: B018 - validates
        if isinstance(self.gpu, bool) or not isinstance(self.gpu, int) or self.gpu < 0:
            raise TaskResourcesError(
                f"transformation {self.owner!r}: gpu={self.gpu!r} must be a whole number >= 0"
            )
        for key, value in dict(self.node_selector).items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TaskResourcesError(
                    f"transformation {self.owner!r}: node_selector {key!r}: {value!r} must map "
                    "label names to label values, both strings"
                )
        for toleration in self.tolerations:
            unknown = set(toleration) - {"key", "operator", "value", "effect", "tolerationSeconds"}
            if unknown:
                raise TaskResourcesError(
                    f"transformation {self.owner!r}: toleration {dict(toleration)!r} has unknown "
                    f"fields {sorted(unknown)}; allowed: key, operator, value, effect, tolerationSeconds"
                )

    @property
    def expected_seconds(self) -> float | None:
        """expected_duration in seconds (None if not set); raises TaskResourcesError if invalid."""
        value = self.expected_duration
        if value is None:
            return None
        seconds = value.total_seconds() if isinstance(value, dt.timedelta) else value
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds < float("inf"):
            raise TaskResourcesError(
                f"transformation {self.owner!r}: expected_duration={value!r} must be a number of seconds "
                "above 0 or a timedelta, e.g. expected_duration=600 or timedelta(minutes=10)"
            )
        return float(seconds)

    @property
    def memory_bytes(self) -> int:
        return int(parse_quantity(self.memory, field_name="memory"))

    def native_threads(self) -> int:
        """Threads for a task's native pools (BLAS, OpenMP): its cpu request, at least one.
        Left alone they size to the machine (or node), not to the task: every task of a
        2-at-once backfill, or a 1-cpu pod on a 16-core node, would start a thread per core
        and spend its CPU waiting on the others."""
        return max(1, int(parse_quantity(self.cpu, field_name="cpu", owner=self.owner)))

    def requests(self) -> dict[str, str]:
        out = {"cpu": self.cpu, "memory": self.memory}
        if self.ephemeral_storage:
            out["ephemeral-storage"] = self.ephemeral_storage
        if self.gpu:
            out["nvidia.com/gpu"] = str(self.gpu)
        return out

    def limits(self) -> dict[str, str]:
        out = self.requests()
        if self.memory_limit:
            out["memory"] = self.memory_limit
        return out

    def k8s_config(self) -> dict[str, Any]:
        """The `dagster-k8s/config` op tag value that dagster-k8s merges into the step's pod."""
        pod_spec: dict[str, Any] = {}
        if self.node_selector:
            pod_spec["node_selector"] = dict(self.node_selector)
        if self.tolerations:
            pod_spec["tolerations"] = [dict(t) for t in self.tolerations]
        config: dict[str, Any] = {
            "container_config": {"resources": {"requests": self.requests(), "limits": self.limits()}}
        }
        if pod_spec:
            config["pod_spec_config"] = pod_spec
        return config

    def op_tags(self, transformation: str) -> dict[str, Any]:
        tags: dict[str, Any] = {K8S_CONFIG_TAG: self.k8s_config(), TRANSFORMATION_TAG: transformation}
        if self.memory_growth is not None:
            tags[MEMORY_GROWTH_TAG] = str(float(self.memory_growth))
            tags[MAX_MEMORY_TAG] = self.max_memory or f"{int(self.memory_bytes * 8 / 2**20)}Mi"
        if self.expected_seconds is not None:
            tags[EXPECTED_DURATION_TAG] = f"{self.expected_seconds:g}"
        return tags

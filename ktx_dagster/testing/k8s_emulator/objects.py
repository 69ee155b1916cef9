"""The API's resource kinds, its errors, timestamps and resource quantities."""

from __future__ import annotations

import datetime as _dt
import random
import string
from collections.abc import Mapping
from decimal import Decimal
from typing import Any


# plural -> (groupVersion, kind, namespaced)
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "namespaces": ("v1", "Namespace", False),
    "pods": ("v1", "Pod", True),
    "configmaps": ("v1", "ConfigMap", True),
    "secrets": ("v1", "Secret", True),
    "serviceaccounts": ("v1", "ServiceAccount", True),
    "services": ("v1", "Service", True),
    "persistentvolumeclaims": ("v1", "PersistentVolumeClaim", True),
    "events": ("v1", "Event", True),
    "jobs": ("batch/v1", "Job", True),
    "roles": ("rbac.authorization.k8s.io/v1", "Role", True),
    "rolebindings": ("rbac.authorization.k8s.io/v1", "RoleBinding", True),
}


_SUBRESOURCES = {("pods", "status"), ("pods", "log"), ("pods", "eviction"), ("jobs", "status"), ("namespaces", "status")}


_DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


_WATCH_HISTORY = 20000


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now_precise() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _rand_suffix(n: int = 5) -> str:
    return "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(n))


class ApiError(Exception):
    """An error rendered as a Kubernetes ``Status`` object."""

    REASONS = {
        400: "BadRequest",
        404: "NotFound",
        405: "MethodNotAllowed",
        409: "AlreadyExists",
        410: "Expired",
        422: "Invalid",
        500: "InternalError",
    }

    def __init__(self, code: int, message: str, reason: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or self.REASONS.get(code, "Unknown")

    def status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


def _parse_quantity(value: Any) -> Decimal:
    from kubernetes.utils.quantity import parse_quantity

    return parse_quantity(value)


def _resource_errors(container: Mapping[str, Any], where: str) -> list[str]:
    errors = []
    resources = container.get("resources") or {}
    parsed: dict[str, dict[str, Decimal]] = {}
    for section in ("requests", "limits"):
        parsed[section] = {}
        for name, qty in (resources.get(section) or {}).items():
            try:
                parsed[section][name] = _parse_quantity(qty)
            except Exception:
                errors.append(f"{where}.resources.{section}[{name}]: Invalid value: {qty!r}")
    for name, req in parsed["requests"].items():
        lim = parsed["limits"].get(name)
        if lim is not None and req > lim:
            errors.append(
                f"{where}.resources.requests[{name}]: Invalid value: "
                f"{resources['requests'][name]!r}: must be less than or equal to {name} limit"
            )
    return errors


def _parse_ts(ts: str) -> float:
    return _dt.datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=_dt.timezone.utc).timestamp()


def _qos_class(spec: Mapping[str, Any]) -> str:
    containers = spec.get("containers") or []
    any_set, guaranteed = False, bool(containers)
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or str(req.get(r, lim.get(r))) != str(lim[r]):
                guaranteed = False
    return "Guaranteed" if guaranteed else ("Burstable" if any_set else "BestEffort")

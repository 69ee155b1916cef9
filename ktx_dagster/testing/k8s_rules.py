"""Kubernetes object-name and label rules, as pure functions.

Used by the API emulator (to reject what a real API server rejects) and by the
static checks (every manifest we ship must pass them). The rules follow
https://kubernetes.io/docs/concepts/overview/working-with-objects/names/ and
https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
LABEL_VALUE_MAX = 63
LABEL_NAME_MAX = 63

_DNS1123_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN_RE = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def is_dns1123_label(value: str) -> bool:
    """Namespace, Service and (effectively) Job names: <= 63 chars, lower alnum and '-'."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= DNS1123_LABEL_MAX
        and bool(_DNS1123_LABEL_RE.match(value))
    )


def is_dns1123_subdomain(value: str) -> bool:
    """Most object names (Pod, ConfigMap, Secret, ...): <= 253 chars, lower alnum, '-' and '.'."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= DNS1123_SUBDOMAIN_MAX
        and bool(_DNS1123_SUBDOMAIN_RE.match(value))
    )


def is_valid_label_value(value: Any) -> bool:
    """<= 63 chars, empty or alnum at both ends with only [-_.A-Za-z0-9] inside."""
    return (
        isinstance(value, str)
        and len(value) <= LABEL_VALUE_MAX
        and bool(_LABEL_VALUE_RE.match(value))
    )


def is_valid_label_key(key: Any) -> bool:
    """Optional DNS-subdomain prefix + '/' + a qualified name of <= 63 chars."""
    if not isinstance(key, str) or not key:
        return False
    if "/" in key:
        prefix, _, name = key.partition("/")
        if not is_dns1123_subdomain(prefix):
            return False
    else:
        name = key
    return 0 < len(name) <= LABEL_NAME_MAX and bool(_QUALIFIED_NAME_RE.match(name))


def label_errors(labels: Mapping[str, Any] | None, where: str = "metadata.labels") -> list[str]:
    """Human-readable errors for every invalid label key or value (empty list when valid)."""
    errors: list[str] = []
    for key, value in (labels or {}).items():
        if not is_valid_label_key(key):
            errors.append(f"{where}: Invalid value: {key!r}: invalid label key")
        if not is_valid_label_value(value):
            errors.append(
                f"{where}: Invalid value: {value!r}: a valid label must be an empty string or "
                "consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                "with an alphanumeric character (<= 63 characters)"
            )
    return errors


# Kinds whose names are DNS-1123 labels rather than subdomains.
_LABEL_NAMED_KINDS = {"Namespace", "Service", "Job", "CronJob", "StatefulSet", "Deployment"}


def name_errors(kind: str, name: Any) -> list[str]:
    """Errors for an object name of the given kind (Jobs are limited to 63 chars because
    the Job controller copies the name into the `job-name` label of its pods)."""
    if kind in _LABEL_NAMED_KINDS:
        if not is_dns1123_label(name):
            return [
                f"metadata.name: Invalid value: {name!r}: a {kind} name must be a lowercase "
                "RFC 1123 label of at most 63 characters"
            ]
        return []
    if not is_dns1123_subdomain(name):
        return [
            f"metadata.name: Invalid value: {name!r}: must be a lowercase RFC 1123 subdomain "
            "of at most 253 characters"
        ]
    return []


def object_rule_errors(obj: Mapping[str, Any]) -> list[str]:
    """Name and label errors for a manifest dict, including pod-template labels of workloads."""
    errors: list[str] = []
    kind = obj.get("kind", "")
    meta = obj.get("metadata") or {}
    if meta.get("name") is not None or not meta.get("generateName"):
        errors.extend(name_errors(kind, meta.get("name")))
    errors.extend(label_errors(meta.get("labels")))
    spec = obj.get("spec") or {}
    template = spec.get("template") or (spec.get("jobTemplate") or {}).get("spec", {}).get(
        "template"
    )
    if isinstance(template, Mapping):
        errors.extend(
            label_errors((template.get("metadata") or {}).get("labels"), "spec.template.labels")
        )
    selector = spec.get("selector")
    if isinstance(selector, Mapping):
        match_labels = selector.get("matchLabels", selector if kind == "Service" else None)
        if isinstance(match_labels, Mapping):
            errors.extend(label_errors(match_labels, "spec.selector"))
    return errors

"""The ktx/* labels and annotation of a step's Job and Pod, as valid label values."""

from __future__ import annotations

import hashlib
import re


TRANSFORMATION_LABEL = "ktx/transformation"



PARTITION_LABEL = "ktx/partition"



PARTITION_KEY_ANNOTATION = "ktx/partition-key"



_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")



_HASH_LEN = 10



def sanitize_label_value(value: str) -> str:
    """Turn any string into a valid Kubernetes label value, stably.

    A value that is already valid (<= 63 chars, ``[-_.A-Za-z0-9]``, alphanumeric at both
    ends, or empty) is returned unchanged, so ``kubectl -l ktx/partition=0-999`` works.
    Anything else (``a/b|c``, multi-partition ``2024-01-01|us``, 200-char keys, unicode)
    becomes its cleaned, truncated form plus ``-`` and a 10-hex-char SHA-256 of the
    *original* value, so two different keys never share a label by accident and the
    same key always gets the same label.
    """
    value = "" if value is None else str(value)
    if len(value) <= 63 and _LABEL_VALUE_RE.match(value):
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:_HASH_LEN]
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", value)
    cleaned = re.sub(r"^[^A-Za-z0-9]+", "", cleaned)
    cleaned = cleaned[: 63 - _HASH_LEN - 1]
    cleaned = re.sub(r"[^A-Za-z0-9]+$", "", cleaned)
    return f"{cleaned}-{digest}" if cleaned else digest



def step_labels(transformation: str | None, partition: str | None) -> dict[str, str]:
    """The ``ktx/*`` labels of a step's Job and Pod (only those that are known)."""
    labels = {}
    if transformation:
        labels[TRANSFORMATION_LABEL] = sanitize_label_value(transformation)
    if partition is not None:
        labels[PARTITION_LABEL] = sanitize_label_value(partition)
    return labels

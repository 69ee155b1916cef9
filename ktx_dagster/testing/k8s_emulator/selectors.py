"""Label selectors (equality and set-based) and field selectors, as the API server reads them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


def _split_top_level(text: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


_SET_RE = re.compile(r"^(\S+)\s+(in|notin)\s+\((.*)\)$")


def parse_label_selector(selector: str | None) -> list[tuple[str, str, Any]]:
    """Parse ``a=b,c!=d,e in (x,y),!f,g`` into (key, op, value) requirements."""
    reqs: list[tuple[str, str, Any]] = []
    for part in _split_top_level(selector or ""):
        m = _SET_RE.match(part)
        if m:
            values = {v.strip() for v in m.group(3).split(",") if v.strip()}
            reqs.append((m.group(1), m.group(2), values))
        elif "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append((k.strip(), "!=", v.strip()))
        elif "==" in part:
            k, v = part.split("==", 1)
            reqs.append((k.strip(), "=", v.strip()))
        elif "=" in part:
            k, v = part.split("=", 1)
            reqs.append((k.strip(), "=", v.strip()))
        elif part.startswith("!"):
            reqs.append((part[1:].strip(), "!exists", None))
        else:
            reqs.append((part, "exists", None))
    return reqs


def match_label_selector(labels: Mapping[str, str] | None, selector: str | None) -> bool:
    labels = labels or {}
    for key, op, value in parse_label_selector(selector):
        have = key in labels
        cur = labels.get(key)
        if op == "=" and cur != value:
            return False
        if op == "!=" and have and cur == value:
            return False
        if op == "in" and (not have or cur not in value):
            return False
        if op == "notin" and have and cur in value:
            return False
        if op == "exists" and not have:
            return False
        if op == "!exists" and have:
            return False
    return True


def _dig(obj: Any, dotted: str) -> Any:
    cur = obj
    for part in dotted.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def match_field_selector(obj: Mapping[str, Any], selector: str | None) -> bool:
    for part in _split_top_level(selector or ""):
        if "!=" in part:
            k, v = part.split("!=", 1)
            if str(_dig(obj, k.strip()) or "") == v.strip():
                return False
        else:
            k, v = part.split("==", 1) if "==" in part else part.split("=", 1)
            if str(_dig(obj, k.strip()) or "") != v.strip():
                return False
    return True

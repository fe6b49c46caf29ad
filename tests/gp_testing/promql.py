"""The metric names a PromQL expression reads (enough for our alert rules and
dashboards: names are the identifiers outside strings, label matchers,
`by (...)`/`without (...)`/`on (...)` lists and function calls)."""

from __future__ import annotations

import re

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGES = re.compile(r"\[[^\]]*\]")
_NAME = re.compile(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(?!\s*\()")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """The series names ``expr`` selects (Prometheus's own ``up`` excluded)."""
    bare = _STRINGS.sub("", expr)
    bare = _MATCHERS.sub("", bare)
    bare = _LABEL_LISTS.sub("", bare)
    bare = _RANGES.sub("", bare)
    bare = re.sub(r"\$\w+", "", bare)  # Grafana variables, e.g. $__rate_interval
    found = {n for n in _NAME.findall(bare) if n.lower() not in _KEYWORDS}
    return {n for n in found if not n.isdigit()} - {"up"}

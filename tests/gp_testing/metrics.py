"""Reading a /metrics page the way Prometheus does (its text format parser)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the page: (name, labels) -> value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float | None:
    """One sample's value (None: not on the page)."""
    return samples(text).get((name, frozenset(labels.items())))


def names(text: str) -> set[str]:
    """The sample names the page declares, with or without samples yet (a
    counter's _total, a histogram's _bucket/_count/_sum)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    out = {name for name, _ in samples(text)}
    for family in text_string_to_metric_families(text):
        out.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return out

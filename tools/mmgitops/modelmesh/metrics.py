"""Reading a pod's Prometheus text: metric families by name, and a sample's value summed over matching labels."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Families = dict[str, Any]


def parse(text: str) -> Families:
    """Metric families by name; counters are named without `_total`, as prometheus_client parses them."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: Families, sample_name: str, **labels: str) -> float | None:
    """The sum of the samples named `sample_name` that carry `labels`; None when there is none."""
    found = [s.value for f in families.values() for s in f.samples
             if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items())]
    return float(sum(found)) if found else None


def total(scrapes: Iterable[Families], sample_name: str, **labels: str) -> float:
    """A sample summed over several pods' scrapes; a pod that does not report it counts 0."""
    return sum(value(families, sample_name, **labels) or 0.0 for families in scrapes)

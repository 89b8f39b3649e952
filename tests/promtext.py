"""Read samples out of a Prometheus text exposition, telling an absent metric from a zero one."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def sample(text: str, metric: str, /, **labels: str) -> float | None:
    """Sum of the samples called ``metric`` whose labels include ``labels``; None when no sample matches.

    None is not 0.0: a test that expects "nothing counted" must be able to tell a counter that is
    missing (never registered, wrong labels) from one that is really zero.
    """
    found = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(found) if found else None


def label_values(text: str, metric: str, label: str) -> set[str]:
    """Every value the ``label`` label takes on samples called ``metric``."""
    return {
        s.labels[label]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == metric and label in s.labels
    }

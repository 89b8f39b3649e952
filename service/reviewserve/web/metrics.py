"""Prometheus metrics: HTTP metrics from prometheus-flask-exporter plus model metrics.

Under gunicorn (``PROMETHEUS_MULTIPROC_DIR`` set) every worker writes its own files and ``/metrics``
aggregates them, so counts are right whatever worker answers the scrape; exited workers' files are folded
into an archive (:mod:`reviewserve.web.metricsdir`), which the scrape reads with them.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Sequence

from flask import Flask, Request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_flask_exporter import PrometheusMetrics
from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

from reviewserve.model import Prediction, Predictor
from reviewserve.web import shedding
from reviewserve.web.metricsdir import FoldAwareCollector

PROBABILITY_BUCKETS = tuple(round(i / 10, 1) for i in range(1, 11))
REVIEWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def path(request: Request) -> str:
    """Label requests by route template, so unknown URLs cannot blow up label cardinality."""
    return request.url_rule.rule if request.url_rule is not None else "<unmatched>"


class ModelMetrics:
    """Model-level metrics: predictions by label, positive-probability drift histogram, batch sizes."""

    def __init__(self, registry: CollectorRegistry, track: str = "stable") -> None:
        self.track = track
        self.predictions = Counter(
            "reviewserve_predictions_total",
            "Reviews scored, by predicted label and deployment track.",
            ["label", "track"],
            registry=registry,
        )
        self.positive_probability = Histogram(
            "reviewserve_positive_probability",
            "Positive-class probability of scored reviews (a drift signal).",
            buckets=PROBABILITY_BUCKETS,
            registry=registry,
        )
        self.reviews_per_request = Histogram(
            "reviewserve_request_reviews",
            "Reviews per prediction request.",
            buckets=REVIEWS_BUCKETS,
            registry=registry,
        )
        self.model_info = Gauge(
            "reviewserve_model_info",
            "The served model (always 1), labelled by name, version and deployment track.",
            ["name", "version", "track"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.model_load_seconds = Gauge(
            "reviewserve_model_load_seconds",
            "Seconds it took to verify and load the model.",
            registry=registry,
            multiprocess_mode="max",
        )

    def model_loaded(self, predictor: Predictor) -> None:
        """Record which model is served and how long it took to load."""
        self.model_info.labels(name=predictor.name, version=predictor.version, track=self.track).set(1)
        self.model_load_seconds.set(predictor.load_seconds)

    def observe(self, predictions: Sequence[Prediction]) -> None:
        """Record one request's predictions."""
        self.reviews_per_request.observe(len(predictions))
        for label, count in collections.Counter(p.label for p in predictions).items():
            self.predictions.labels(label=label, track=self.track).inc(count)  # one write per label, not per review
        for prediction in predictions:
            self.positive_probability.observe(prediction.positive_probability)


class GunicornMetrics(GunicornInternalPrometheusMetrics):
    """prometheus-flask-exporter's gunicorn mode, scraping with :class:`FoldAwareCollector`."""

    def generate_metrics(self, accept_header: str | None = None, names: list[str] | None = None) -> tuple[str, str]:
        """The exposition of every worker's files plus the archive, never in the middle of a fold."""
        shedding.publish_sheds()  # this worker's latest sheds (the others publish theirs every 50 ms)
        registry = CollectorRegistry()
        FoldAwareCollector(registry)
        generate_latest, content_type = choose_encoder(accept_header)
        target = registry.restricted_registry(names) if names else registry
        return generate_latest(target).decode("utf-8"), content_type


def init_metrics(app: Flask, track: str = "stable") -> ModelMetrics:
    """Attach HTTP metrics and ``/metrics`` to ``app``; return the model metrics (all labelled with ``track``)."""
    options = {
        "group_by": path,
        "buckets": LATENCY_BUCKETS,
        "excluded_paths": ["/metrics"],
        "default_labels": {"track": track},
    }
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        exporter: PrometheusMetrics = GunicornMetrics(app, **options)
    else:
        exporter = PrometheusMetrics(app, registry=CollectorRegistry(auto_describe=True), **options)
    return ModelMetrics(exporter.registry, track)

"""Prometheus metrics of a stream consumer, named in the web service's style (``reviewserve_*``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from reviewserve.stream.broker import GroupInfo

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OUTCOMES = ("processed", "failed", "dead_lettered", "duplicate")

log = logging.getLogger(__name__)


class GroupCollector(Collector):
    """Pending count and lag of every group on the stream, read from the broker at scrape time."""

    def __init__(self, stream: str, groups: Callable[[], Sequence[GroupInfo]]) -> None:
        self.stream = stream
        self.groups = groups

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The metric families, without asking the broker (registration must not block on it)."""
        return self._families([])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """``reviewserve_stream_group_pending`` and ``reviewserve_stream_group_lag`` per group."""
        try:
            infos = list(self.groups())
        except Exception as exc:  # a scrape must not fail because the broker is down
            log.warning("cannot read consumer groups for metrics: %s", exc)
            infos = []
        return self._families(infos)

    def _families(self, infos: Sequence[GroupInfo]) -> Iterator[GaugeMetricFamily]:
        pending = GaugeMetricFamily(
            "reviewserve_stream_group_pending",
            "Messages delivered to the group's consumers and not yet acknowledged (XINFO GROUPS pending).",
            labels=["stream", "group"],
        )
        lag = GaugeMetricFamily(
            "reviewserve_stream_group_lag",
            "Messages in the stream not yet delivered to the group (XINFO GROUPS lag).",
            labels=["stream", "group"],
        )
        for info in infos:
            pending.add_metric([self.stream, info.name], info.pending)
            if info.lag is not None:
                lag.add_metric([self.stream, info.name], info.lag)
        yield pending
        yield lag


class LengthCollector(Collector):
    """``reviewserve_stream_length``: entries in the input, results and dead-letter streams (XLEN at scrape)."""

    def __init__(self, lengths: Callable[[], Mapping[str, int]]) -> None:
        self.lengths = lengths

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The family, without asking the broker."""
        yield self._family({})

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One sample per stream; none while the broker is unreachable."""
        try:
            lengths = dict(self.lengths())
        except Exception as exc:  # a scrape must not fail because the broker is down
            log.warning("cannot read stream lengths for metrics: %s", exc)
            lengths = {}
        yield self._family(lengths)

    @staticmethod
    def _family(lengths: Mapping[str, int]) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "reviewserve_stream_length",
            "Entries in the stream (XLEN): input, results and dead-letter streams, to watch their retention.",
            labels=["stream"],
        )
        for name, length in lengths.items():
            family.add_metric([name], length)
        return family


class StreamMetrics:
    """Counters and histograms the consumer loop updates."""

    def __init__(self, registry: CollectorRegistry) -> None:
        disable_created_metrics()  # no `_created` series: the web service's exporter shows none either
        self.registry = registry
        self.messages = Counter(
            "reviewserve_stream_messages",
            "Messages handled, by outcome: processed (result written), failed (could not be scored), "
            "dead_lettered (written to the dead-letter stream), duplicate (already acknowledged elsewhere).",
            ["outcome"],
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.messages.labels(outcome=outcome)
        self.dead_letters = Counter(
            "reviewserve_stream_dead_letters",
            "Messages dead-lettered, by reason code.",
            ["reason"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "reviewserve_stream_batch_size", "Messages per batch read.", buckets=BATCH_BUCKETS, registry=registry
        )
        self.processing = Histogram(
            "reviewserve_stream_processing_seconds",
            "Seconds from a batch read to its acknowledgement (decode, predict, write, ack).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.predictions = Counter(
            "reviewserve_stream_predictions", "Reviews scored, by predicted label.", ["label"], registry=registry
        )
        self.model_info = Gauge(
            "reviewserve_model_info",
            "The model in use (always 1), labelled by name and version.",
            ["name", "version"],
            registry=registry,
        )
        self.consumer_info = Gauge(
            "reviewserve_stream_consumer_info",
            "This consumer (always 1), labelled by stream, group, consumer name and sink.",
            ["stream", "group", "consumer", "sink"],
            registry=registry,
        )

"""The consumer loop: read a batch -> decode each message -> one vectorised predict -> sink -> ack.

Order of work in each iteration: first (once at start, and after a broker error) this consumer's
own pending messages (a restart under the same name), then every ``claim_interval`` seconds the
messages other consumers left pending longer than ``claim_idle_ms`` (XAUTOCLAIM: a consumer that
died), else new messages (XREADGROUP COUNT/BLOCK). A message delivered more than
``max_deliveries`` times (it keeps killing or stalling its consumers) is dead-lettered, as is
one that cannot be scored; an entry deleted from the stream while pending is dead-lettered with
reason ``deleted``. A batch that was scored but whose write failed for an outage has its delivery
counts set back (those deliveries scored fine), so restarts during an outage never dead-letter valid
messages. :meth:`Consumer.request_stop` (SIGTERM) stops reading; the batch in
hand is finished and acknowledged before :meth:`Consumer.run` returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from reviewserve.model import Predictor
from reviewserve.stream.broker import Broker, Completed, DeadLetter, Message, Result
from reviewserve.stream.codec import Undecodable, decode
from reviewserve.stream.metrics import StreamMetrics
from reviewserve.stream.sinks import Route, Sink

log = logging.getLogger(__name__)
T = TypeVar("T")
DELETED = "the entry was deleted from the stream while pending, before it was scored"


@dataclass(frozen=True)
class ConsumerConfig:
    """How one consumer reads."""

    route: Route
    consumer: str
    batch_size: int = 64
    block_ms: int = 1000
    claim_idle_ms: int = 30_000
    max_deliveries: int = 5
    forget_consumers_after_ms: int = 3_600_000  # 0: never remove idle consumers from the group
    transient_errors: tuple[type[BaseException], ...] = field(default=(ConnectionError, TimeoutError))

    @property
    def claim_interval(self) -> float:
        """Seconds between XAUTOCLAIM passes: half the idle time, at least the block time."""
        return max(self.claim_idle_ms / 2000, self.block_ms / 1000)


@dataclass
class Totals:
    """Counts over the consumer's life (also logged at exit)."""

    batches: int = 0
    processed: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    claimed: int = 0


class Consumer:
    """One consumer of one group: a loop over the broker, the predictor and a sink."""

    def __init__(
        self, broker: Broker, predictor: Predictor, sink: Sink, config: ConsumerConfig, metrics: StreamMetrics
    ) -> None:
        self.broker = broker
        self.predictor = predictor
        self.sink = sink
        self.config = config
        self.metrics = metrics
        self.totals = Totals()
        self.stopping = threading.Event()
        self.heartbeat = time.monotonic()
        self.broker_error: str | None = None
        self._recover_own = True
        self._last_claim = 0.0

    # ----------------------------------------------------------------- control ---

    def request_stop(self) -> None:
        """Stop reading; the batch in hand is still finished and acknowledged."""
        self.stopping.set()

    def alive(self) -> str | None:
        """None while the loop keeps iterating (a blocking read lasts at most ``block_ms``)."""
        silent = time.monotonic() - self.heartbeat
        limit = max(60.0, 10 * self.config.block_ms / 1000)
        return None if silent < limit else f"consumer loop silent for {silent:.0f} s"

    # -------------------------------------------------------------------- loop ---

    def run(self) -> Totals:
        """Consume until :meth:`request_stop`; return the totals."""
        route, cfg = self.config.route, self.config
        log.info(
            "consumer started",
            extra={"stream": route.stream, "group": route.group, "consumer": cfg.consumer, "sink": self.sink.name},
        )
        group_ready = False
        while not self.stopping.is_set():
            self.heartbeat = time.monotonic()
            try:
                if not group_ready:  # also waits here for a broker that is not up yet
                    self.broker.check_server()
                    self._warn_if_late(self.broker.ensure_group(route.stream, route.group))
                    group_ready = True
                batch = self._next_batch()
                if batch:
                    self.process(batch)
                self.broker_error = None
            except cfg.transient_errors as exc:
                self.broker_error = f"{type(exc).__name__}: {exc}"
                self._recover_own = True
                log.warning("broker or sink unavailable, retrying: %s", self.broker_error)
                self.stopping.wait(1.0)
        log.info("consumer stopped", extra={"totals": self.totals.__dict__})
        return self.totals

    def _warn_if_late(self, lost: int | None) -> None:
        """A group created after entries were trimmed or deleted never sees those: say so loudly."""
        route = self.config.route
        if lost:
            log.warning(
                "group %r was created on stream %r after %d of its entries were trimmed or deleted: it "
                "starts at the oldest entry still there and never sees those. Declare every group "
                "before producing (reviewserve stream produce --group %s) to get every entry.",
                route.group, route.stream, lost, route.group,
                extra={"group": route.group, "stream": route.stream, "missed": lost},
            )  # fmt: skip

    def _next_batch(self) -> list[Message]:
        route, cfg = self.config.route, self.config
        if self._recover_own:
            own = self.broker.read_own_pending(route.stream, route.group, cfg.consumer, cfg.batch_size)
            if own:
                return own
            self._recover_own = False
        now = time.monotonic()
        if now - self._last_claim >= cfg.claim_interval:
            self._last_claim = now
            claimed = self.broker.claim_stale(
                route.stream, route.group, cfg.consumer, cfg.claim_idle_ms, cfg.batch_size
            )
            if claimed:
                self._last_claim = 0.0  # there may be more: claim again next iteration
                self.totals.claimed += len(claimed)
                log.info("claimed %d stale messages", len(claimed), extra={"first": claimed[0].id})
                return claimed
            if cfg.forget_consumers_after_ms:
                # Every pod is a consumer named after it: forget those long gone (nothing pending).
                gone = self.broker.forget_idle_consumers(
                    route.stream, route.group, cfg.forget_consumers_after_ms, keep=cfg.consumer
                )
                if gone:
                    log.info("removed %d idle consumers with nothing pending", len(gone), extra={"consumers": gone})
        return self.broker.read(route.stream, route.group, cfg.consumer, cfg.batch_size, cfg.block_ms)

    # ------------------------------------------------------------------- batch ---

    def process(self, messages: Sequence[Message]) -> Completed:
        """Decode, score the valid messages in one call, write and acknowledge the whole batch."""
        started = time.perf_counter()
        cfg = self.config
        dead: list[DeadLetter] = []
        orphans: list[DeadLetter] = []  # deleted and no longer pending: dead-lettered, nothing to ack
        ids: list[str] = []
        texts: list[str] = []
        deliveries: dict[str, int] = {}
        for message in messages:
            if not message.pending:
                orphans.append(DeadLetter(message.id, f"deleted: {DELETED}"))
                continue
            if message.deliveries > cfg.max_deliveries:
                reason = f"max_deliveries: delivered {message.deliveries} times (limit {cfg.max_deliveries})"
                dead.append(DeadLetter(message.id, reason))
                continue
            try:
                texts.append(decode(message.fields, self.predictor.max_chars))
                ids.append(message.id)
                deliveries[message.id] = message.deliveries
            except Undecodable as exc:
                dead.append(DeadLetter(message.id, exc.reason))
        predictions = self.predictor.predict(texts) if texts else []
        version = self.predictor.version
        results = [
            Result(i, p.label, p.probability, p.positive_probability, version)
            for i, p in zip(ids, predictions, strict=True)
        ]
        if orphans:
            written = self._retry(lambda: self.broker.dead_letter(cfg.route.dead_letter, cfg.route.group, orphans))
            self._observe_orphans(orphans, written)
        done = self._write(results, dead, deliveries)
        self._observe(messages, results, dead, done, time.perf_counter() - started)
        return done

    def _retry(self, call: Callable[[], T]) -> T:
        """Run ``call`` until it succeeds, waiting out transient errors (unless stopping)."""
        cfg = self.config
        while True:
            try:
                return call()
            except cfg.transient_errors as exc:
                if self.stopping.is_set():
                    raise
                self.broker_error = f"{type(exc).__name__}: {exc}"
                log.warning("broker unavailable, retrying: %s", self.broker_error)
                self.heartbeat = time.monotonic()
                self.stopping.wait(1.0)

    def _observe_orphans(self, orphans: Sequence[DeadLetter], written: int) -> None:
        self.metrics.messages.labels(outcome="failed").inc(len(orphans))
        self.metrics.messages.labels(outcome="dead_lettered").inc(written)
        self.metrics.dead_letters.labels(reason="deleted").inc(len(orphans))
        self.totals.dead_lettered += written
        log.warning("%d entries were deleted from the stream while pending: dead-lettered", len(orphans))

    def _refund(self, deliveries: dict[str, int]) -> None:
        """Set the batch's delivery counts back by the one that scored fine (best effort)."""
        cfg = self.config
        counts = {i: max(1, n - 1) for i, n in deliveries.items() if n > 1}
        try:
            self.broker.reset_deliveries(cfg.route.stream, cfg.route.group, cfg.consumer, counts)
        except cfg.transient_errors as exc:  # the broker is what is down: its counts did not move either
            log.debug("cannot reset delivery counts: %s", exc)

    def _write(
        self, results: Sequence[Result], dead: Sequence[DeadLetter], deliveries: dict[str, int] | None = None
    ) -> Completed:
        """Write and acknowledge the scored batch, retrying the same write while the broker/sink is down.

        Retrying is safe: a message the lost attempt already completed is no longer pending, so the
        retry writes nothing for it. Re-reading instead would count extra deliveries.
        """
        cfg = self.config
        refunded = False
        while True:
            try:
                done = self.sink.write(self.broker, cfg.route, results, dead)
                self.broker_error = None
                return done
            except cfg.transient_errors as exc:
                if not refunded and deliveries:
                    self._refund(deliveries)
                    refunded = True
                if self.stopping.is_set():
                    raise  # stopping: the batch stays pending and is claimed by another consumer
                self.broker_error = f"{type(exc).__name__}: {exc}"
                log.warning("cannot write the batch, retrying: %s", self.broker_error)
                self.heartbeat = time.monotonic()
                self.stopping.wait(1.0)

    def _observe(
        self,
        messages: Sequence[Message],
        results: Sequence[Result],
        dead: Sequence[DeadLetter],
        done: Completed,
        seconds: float,
    ) -> None:
        m = self.metrics
        m.batch_size.observe(len(messages))
        m.processing.observe(seconds)
        processed = done.results + done.acked
        m.messages.labels(outcome="processed").inc(processed)
        m.messages.labels(outcome="failed").inc(len(dead))
        m.messages.labels(outcome="dead_lettered").inc(done.dead_letters)
        m.messages.labels(outcome="duplicate").inc(done.duplicates)
        for letter in dead:
            m.dead_letters.labels(reason=letter.reason.split(":", 1)[0]).inc()
        for result in results:
            m.predictions.labels(label=result.label).inc()
        t = self.totals
        t.batches += 1
        t.processed += processed
        t.dead_lettered += done.dead_letters
        t.duplicates += done.duplicates
        if done.duplicates:
            log.info("%d messages were already acknowledged by another consumer", done.duplicates)
        log.debug("batch done", extra={"messages": len(messages), "seconds": round(seconds, 4)})

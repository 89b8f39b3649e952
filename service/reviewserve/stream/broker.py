"""The message-broker interface the producer and consumer are written against.

Redis Streams implement it today (:mod:`reviewserve.stream.redis_broker`); another engine
(Kafka, NATS JetStream, ...) needs only these operations with the same guarantees:

- ``read``/``claim_stale`` hand out messages to one consumer of a group; a message stays
  *pending* for that consumer until it is acknowledged;
- ``complete`` acknowledges messages and writes their results / dead letters **atomically, and
  only for the messages it acknowledged** (so a message ends with exactly one result even when
  two consumers scored it);
- ``groups`` reports each group's pending count and lag, which the producer uses for
  back-pressure and ``trim_acknowledged`` for trimming what every group has acknowledged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Message:
    """One stream entry as delivered to a consumer; ``fields`` is None when it was deleted meanwhile.

    ``pending`` is False for a deleted entry the broker already dropped from the group's pending
    list (nothing left to acknowledge: it can only be dead-lettered).
    """

    id: str
    fields: Mapping[bytes, bytes] | None
    deliveries: int = 1
    pending: bool = True


@dataclass(frozen=True, slots=True)
class Result:
    """A scored message, as written to the results stream (field names are the public contract)."""

    source_id: str
    label: str
    probability: float
    positive_probability: float
    model_version: str

    def fields(self) -> dict[str, str]:
        """The results-stream fields: source_id, label, probability, positive_probability, model_version."""
        return {
            "source_id": self.source_id,
            "label": self.label,
            "probability": repr(self.probability),
            "positive_probability": repr(self.positive_probability),
            "model_version": self.model_version,
        }


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that cannot be scored: its id and the reason (``code: explanation``)."""

    source_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Completed:
    """What one ``complete`` call acknowledged (messages already acknowledged elsewhere are not counted)."""

    results: int = 0
    dead_letters: int = 0
    acked: int = 0
    duplicates: int = 0


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A consumer group's state (Redis: XINFO GROUPS + XPENDING)."""

    name: str
    consumers: int
    pending: int
    last_delivered_id: str
    lag: int | None  # entries not yet delivered to the group; None if the engine cannot tell


class Broker(Protocol):
    """Operations of a log-structured broker with consumer groups."""

    def ping(self) -> bool:
        """True when the broker answers."""
        ...

    def check_server(self) -> None:
        """Raise when the server cannot run the pipeline (e.g. a cluster); connection errors propagate."""
        ...

    def ensure_group(self, stream: str, group: str) -> int | None:
        """Create ``group`` on ``stream`` (and the stream) reading from the very start, unless it exists.

        None when it existed; else how many entries the stream had lost before it was created.
        """
        ...

    def group_exists(self, stream: str, group: str) -> bool:
        """Whether ``group`` exists on ``stream``."""
        ...

    def read(self, stream: str, group: str, consumer: str, count: int, block_ms: int) -> list[Message]:
        """Up to ``count`` never-delivered messages, waiting up to ``block_ms`` for the first."""
        ...

    def read_own_pending(self, stream: str, group: str, consumer: str, count: int) -> list[Message]:
        """Messages already delivered to ``consumer`` and not acknowledged (after a restart)."""
        ...

    def claim_stale(self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int) -> list[Message]:
        """Take over up to ``count`` messages pending longer than ``min_idle_ms`` in any consumer."""
        ...

    def reset_deliveries(self, stream: str, group: str, consumer: str, counts: Mapping[str, int]) -> None:
        """Set the delivery counts of messages ``consumer`` holds (deliveries that scored fine)."""
        ...

    def dead_letter(self, dead_letter_stream: str, group: str, letters: Sequence[DeadLetter]) -> int:
        """Write dead letters for messages no longer pending; return how many."""
        ...

    def lengths(self, streams: Sequence[str]) -> dict[str, int]:
        """The number of entries of each stream."""
        ...

    def complete(
        self,
        stream: str,
        group: str,
        results_stream: str | None,
        dead_letter_stream: str,
        results: Sequence[Result],
        dead: Sequence[DeadLetter],
        ack_only: Sequence[str] = (),
    ) -> Completed:
        """Acknowledge and, atomically with each acknowledgement, write its result or dead letter.

        ``results`` go to ``results_stream`` (None: acknowledge them without writing, for sinks that
        wrote them elsewhere first); ``ack_only`` ids are acknowledged without any write.
        """
        ...

    def groups(self, stream: str) -> list[GroupInfo]:
        """Every consumer group of ``stream`` (empty when the stream does not exist)."""
        ...

    def forget_idle_consumers(self, stream: str, group: str, min_idle_ms: int, keep: str) -> list[str]:
        """Remove the group's consumers idle that long with nothing pending (atomically checked); not ``keep``."""
        ...

    def add(self, stream: str, entries: Sequence[Mapping[str, str]]) -> list[str]:
        """Append entries; return their ids."""
        ...

    def trim_acknowledged(self, stream: str) -> int:
        """Delete the entries every group has read and acknowledged; return how many were deleted."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...

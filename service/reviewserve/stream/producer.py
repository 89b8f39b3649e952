"""Push reviews into the input stream, bounded without ever dropping what a group has not read.

Input: files or stdin, as JSON lines with a ``review`` field or plain text lines (``auto``
decides per file from its first non-blank line), or the labelled training format
(``text<TAB>label``, the label dropped). The stream stays bounded two ways:

- back-pressure: before each chunk the producer waits while the largest lag over the groups
  (entries not yet delivered to the group, XINFO GROUPS) is above ``max_lag``;
- trimming: only entries every group has read and acknowledged are deleted (XTRIM MINID, see
  :meth:`~reviewserve.stream.redis_broker.RedisBroker.trim_acknowledged`); never a blind MAXLEN.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from reviewserve.stream import REVIEW_FIELD
from reviewserve.stream.broker import Broker

Format = Literal["auto", "jsonl", "text", "labelled"]
FORMATS: tuple[str, ...] = ("auto", "jsonl", "text", "labelled")

log = logging.getLogger(__name__)


class BadLine(ValueError):
    """An input line that cannot be turned into a review (named by file and line)."""


@dataclass
class Skipped:
    """Lines skipped with the reason (reported; the exit status says some were skipped)."""

    where: str
    reason: str


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def read_lines(handle: IO[str], name: str, fmt: Format, skipped: list[Skipped]) -> Iterator[str]:
    """Yield review texts from one open file; bad lines are appended to ``skipped``."""
    if fmt == "labelled":
        from reviewserve.model.data import read_file

        if name == "-":
            raise BadLine("--format labelled needs files, not stdin")
        texts, _ = read_file(Path(name))
        yield from texts
        return
    mode = fmt
    for number, raw in enumerate(handle, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        if mode == "auto":
            mode = "jsonl" if _is_json_object(line) else "text"
        if mode == "text":
            yield line
            continue
        try:
            document = json.loads(line)
        except ValueError as exc:
            skipped.append(Skipped(f"{name}:{number}", f"not JSON: {exc}"))
            continue
        review = document.get(REVIEW_FIELD) if isinstance(document, dict) else None
        if not isinstance(review, str):
            skipped.append(Skipped(f"{name}:{number}", f"no string {REVIEW_FIELD!r} field"))
            continue
        yield review


def chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    """Lists of up to ``size`` items."""
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Producer:
    """Appends reviews in chunks, waiting on the groups' lag and trimming what all have acknowledged."""

    def __init__(
        self,
        broker: Broker,
        stream: str,
        max_lag: int = 10_000,
        chunk_size: int = 500,
        poll_seconds: float = 0.1,
        trim: bool = True,
    ) -> None:
        self.broker = broker
        self.stream = stream
        self.max_lag = max_lag
        # Each producer overshoots max_lag by at most one chunk.
        self.chunk_size = max(1, min(chunk_size, max_lag))
        self.poll_seconds = poll_seconds
        self.trim = trim
        self.produced = 0
        self.trimmed = 0
        self.waited_seconds = 0.0

    def max_group_lag(self) -> int:
        """The largest lag over the stream's groups (0 without groups)."""
        return max((g.lag or 0 for g in self.broker.groups(self.stream)), default=0)

    def wait_for_room(self) -> None:
        """Block while some group's lag is above ``max_lag`` (trimming meanwhile)."""
        started = time.monotonic()
        last_log = started
        while (lag := self.max_group_lag()) > self.max_lag:
            if self.trim:
                self.trimmed += self.broker.trim_acknowledged(self.stream)
            if time.monotonic() - last_log >= 10:
                last_log = time.monotonic()
                log.warning("back-pressure: group lag %d > %d, waiting", lag, self.max_lag)
            time.sleep(self.poll_seconds)
        self.waited_seconds += time.monotonic() - started

    def send(self, reviews: Iterable[str]) -> int:
        """Append every review (field ``review``); return how many were appended."""
        for chunk in chunks(reviews, self.chunk_size):
            self.wait_for_room()
            self.broker.add(self.stream, [{REVIEW_FIELD: text} for text in chunk])
            self.produced += len(chunk)
            if self.trim:
                self.trimmed += self.broker.trim_acknowledged(self.stream)
        return self.produced

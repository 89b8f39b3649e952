"""Push reviews into the input stream, bounded without ever dropping what a group has not read.

Input: files or stdin, as JSON lines with a ``review`` field or plain text lines (``auto``
decides per file from its first non-blank line), or the labelled training format
(``text<TAB>label``, the label dropped). The stream stays bounded two ways:

- back-pressure: before each chunk the producer waits while the largest lag over the groups
  (entries not yet delivered to the group, XINFO GROUPS) is above ``max_lag``, at most
  ``max_wait`` seconds per chunk; then it fails naming the group that is behind;
- trimming: only entries every group has read and acknowledged are deleted (XTRIM MINID, see
  :meth:`~reviewserve.stream.redis_broker.RedisBroker.trim_acknowledged`); never a blind MAXLEN.

Groups named in ``groups`` are created before the first entry, so they see every entry.
A signal (SIGTERM, Ctrl-C) stops the producer between chunks (a chunk in flight is finished), or
at once while it waits for input or for room; :class:`Stopped` carries the signal.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from reviewserve.stream import REVIEW_FIELD
from reviewserve.stream.broker import Broker, GroupInfo

Format = Literal["auto", "jsonl", "text", "labelled"]
FORMATS: tuple[str, ...] = ("auto", "jsonl", "text", "labelled")

log = logging.getLogger(__name__)


class BadLine(ValueError):
    """An input line that cannot be turned into a review (named by file and line)."""


class Stopped(Exception):
    """The producer was stopped by a signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.signal_name = signal.Signals(signum).name


class BackPressureTimeout(RuntimeError):
    """Waited ``max_wait`` seconds for groups to catch up; the message names them and the remedy."""


LABEL_SUFFIX = re.compile(r"\t\s*(0|1|negative|positive|neg|pos)\s*$", re.IGNORECASE)


def _all_labelled(lines: Iterable[str]) -> int:
    """How many lines end in TAB + a label, if every non-blank line does (a header line may not); else 0."""
    count = 0
    for number, line in enumerate((raw for raw in lines if raw.strip()), start=1):
        if LABEL_SUFFIX.search(line.rstrip("\r\n")):
            count += 1
        elif number > 1 or "\t" not in line:  # only a first `text<TAB>label` line may be a header
            return 0
    return count


def _labelled_hint(name: str, count: int) -> str:
    return (
        f"{name}: all {count} lines end in a TAB and a label, like a labelled training file; the label would be "
        "scored as part of the review. Use --format labelled (labels dropped) or --format text (lines as they are)"
    )


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
    if fmt == "auto" and handle.seekable():
        first = next((line for line in handle if line.strip()), "")
        handle.seek(0)
        if not _is_json_object(first.strip()) and (count := _all_labelled(handle)):
            raise BadLine(_labelled_hint(name, count))
        handle.seek(0)
    # stdin cannot be read twice: count its labelled lines and warn at its end.
    watch, seen, labelled = fmt == "auto" and not handle.seekable(), 0, 0
    for number, raw in enumerate(handle, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        if mode == "auto":
            mode = "jsonl" if _is_json_object(line) else "text"
        if mode == "text":
            if watch:
                seen += 1
                if LABEL_SUFFIX.search(line):
                    labelled += 1
                elif seen > 1 or "\t" not in line:  # only a first `text<TAB>label` line may be a header
                    watch = False
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
    if watch and labelled:  # on stderr, as the skipped lines: stdout ends with the JSON summary
        print(f"warning: {_labelled_hint(name, labelled)}", file=sys.stderr)


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
        max_wait: float = 600.0,
        groups: Sequence[str] = (),
    ) -> None:
        self.broker = broker
        self.stream = stream
        self.max_lag = max_lag
        # Each producer overshoots max_lag by at most one chunk.
        self.chunk_size = max(1, min(chunk_size, max_lag))
        self.poll_seconds = poll_seconds
        self.trim = trim
        self.max_wait = max_wait
        self.groups = tuple(groups)
        self.produced = 0
        self.trimmed = 0
        self.waited_seconds = 0.0
        self._signal: int | None = None
        self._in_flight = False

    def on_signal(self, signum: int, _frame: object = None) -> None:
        """Signal handler: stop now, unless a chunk is in flight (then right after it)."""
        self._signal = signum
        if not self._in_flight:
            raise Stopped(signum)

    def behind(self) -> list[GroupInfo]:
        """The groups whose lag is above ``max_lag``."""
        return [g for g in self.broker.groups(self.stream) if (g.lag or 0) > self.max_lag]

    def describe(self, behind: Sequence[GroupInfo]) -> str:
        """Which groups are behind, and what to do about it."""
        parts = [f"group {g.name!r} ({g.consumers} consumers) has {g.lag} undelivered entries" for g in behind]
        names = " ".join(g.name for g in behind)
        return (
            f"back-pressure on stream {self.stream!r}: {'; '.join(parts)} > --max-lag {self.max_lag}. "
            f"Start consumers of the group (reviewserve stream consume --group {behind[0].name} --consumer NAME), "
            f"or remove a group nobody reads (redis-cli XGROUP DESTROY {self.stream} {behind[0].name}) "
            f"[groups behind: {names}]"
        )

    def wait_for_room(self) -> None:
        """Block while some group's lag is above ``max_lag`` (trimming meanwhile), at most ``max_wait`` s."""
        started = time.monotonic()
        last_log = started
        try:
            while behind := self.behind():
                waited = time.monotonic() - started
                if self.max_wait and waited >= self.max_wait:
                    message = f"gave up after waiting {waited:.0f} s (--max-wait): {self.describe(behind)}"
                    raise BackPressureTimeout(message)
                if self.trim:
                    self.trimmed += self.broker.trim_acknowledged(self.stream)
                if time.monotonic() - last_log >= 10:
                    last_log = time.monotonic()
                    log.warning("%s; waiting", self.describe(behind))
                time.sleep(self.poll_seconds)
        finally:
            self.waited_seconds += time.monotonic() - started

    def send(self, reviews: Iterable[str]) -> int:
        """Append every review (field ``review``); return how many were appended."""
        self.broker.check_server()
        for group in self.groups:
            self.broker.ensure_group(self.stream, group)
        for chunk in chunks(reviews, self.chunk_size):
            self.wait_for_room()
            self._in_flight = True
            try:
                self.broker.add(self.stream, [{REVIEW_FIELD: text} for text in chunk])
                self.produced += len(chunk)
            finally:
                self._in_flight = False
            if self._signal is not None:
                raise Stopped(self._signal)
            if self.trim:
                self.trimmed += self.broker.trim_acknowledged(self.stream)
        return self.produced

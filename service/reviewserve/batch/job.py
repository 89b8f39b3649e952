"""The scoring loop: source chunk -> ``Predictor.predict`` (one vectorised call) -> sink write + commit.

The same loop drives a SQL table and files; it never touches scikit-learn, only the Predictor. For a SQL
table the three steps overlap: the next chunk is read in one thread (:func:`prefetched`) and the previous
one is written and committed in another (:class:`WriteBehind`) while this one is scored.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from reviewserve.batch.progress import Progress
from reviewserve.batch.results import STATUS_OK, RowResult, score_texts
from reviewserve.model import Predictor

log = logging.getLogger("reviewserve.batch")

# Exit codes of `reviewserve score` (README "Batch scoring").
EXIT_OK = 0  # every row read was scored (or there was nothing to do)
EXIT_FAILED = 1  # the job could not run or stopped: bad source, database/storage error, model refused
EXIT_USAGE = 2  # bad command line (click's usage error)
EXIT_ROWS_FAILED = 3  # the job finished, but some rows could not be scored (status 'error' rows written)


class Store(Protocol):
    """What the loop needs from a source/sink pair."""

    def plan(self) -> Any: ...

    def chunks(self, size: int) -> Iterator[tuple[list[Any], list[Any]]]: ...

    def write(self, ids: Sequence[Any], results: Sequence[RowResult]) -> None: ...

    def close(self) -> None: ...


def _record(progress: Progress, ids: Sequence[Any], results: Sequence[RowResult]) -> None:
    ok = sum(1 for r in results if r.status == STATUS_OK)
    progress.chunk(ok, len(results) - ok, last_id=_jsonable(ids[-1]))


@dataclass
class Summary:
    """The end-of-run report (also what is pushed to the Pushgateway)."""

    model: str
    version: str
    shard: str
    total: int | None
    skipped: int
    read: int = 0
    scored: int = 0
    failed: int = 0
    seconds: float = 0.0
    rows_per_s: float = 0.0
    dry_run: bool = False
    would_score: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """``EXIT_ROWS_FAILED`` when some rows failed, else ``EXIT_OK``."""
        return EXIT_ROWS_FAILED if self.failed else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``extra`` merged in)."""
        data = asdict(self)
        extra = data.pop("extra")
        if not self.dry_run:
            data.pop("would_score")
        return {**data, **extra, "exit_code": self.exit_code}


def run_job(
    store: Store,
    predictor: Predictor,
    *,
    chunk_size: int = 1000,
    shard: str = "0/1",
    dry_run: bool = False,
    bar: bool | None = None,
) -> Summary:
    """Score every row of ``store`` still missing a prediction; return the summary."""
    plan = store.plan()
    summary = Summary(
        model=predictor.name,
        version=predictor.version,
        shard=shard,
        total=plan.total,
        skipped=plan.done,
        dry_run=dry_run,
        extra=getattr(plan, "extra", {}),
    )
    if dry_run:
        summary.would_score = plan.pending
        return summary
    progress = Progress(plan.pending, bar=bar)
    chunks = store.chunks(chunk_size)
    if getattr(store, "prefetch", False):
        chunks = prefetched(chunks)
    writer = WriteBehind(store.write, progress) if getattr(store, "write_behind", False) else None
    try:
        for ids, texts in chunks:
            results = score_texts(predictor, texts)
            if writer is not None:
                writer.put(ids, results)  # committed (and logged) by the writer thread
            else:
                store.write(ids, results)
                _record(progress, ids, results)
        if writer is not None:
            writer.finish()  # every chunk committed, or the writer's error raised here
    finally:
        if writer is not None:
            writer.close()
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # stop the reader thread before the store is closed
        progress.close()
        summary.read, summary.scored, summary.failed = progress.read, progress.scored, progress.failed
        summary.seconds = round(progress.seconds, 3)
        summary.rows_per_s = round(progress.read / progress.seconds, 1) if progress.seconds > 0 else 0.0
    return summary


_DONE = object()


class WriteBehind:
    """Writes and commits chunk N in a thread while the caller scores chunk N+1.

    ``write`` (the store's upsert + commit) runs in one writer thread, in chunk order; ``progress``
    records a chunk (and logs "chunk committed") only after its commit. At most one chunk waits while
    another is being written, so memory stays bounded by the chunk size. The first error of the
    writer stops it: :meth:`put` and :meth:`finish` raise it in the caller, which stops reading and
    scoring; nothing after the failed chunk is written. A kill at any moment loses the (at most two)
    scored chunks not yet committed; the rerun finds them through the anti-join, as before.
    """

    def __init__(self, write: Any, progress: Progress) -> None:
        self._write = write
        self._progress = progress
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="write-behind", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if self._error is not None:
                continue  # failed already: drop what was queued, keep unblocking put() until _DONE
            ids, results = item
            try:
                self._write(ids, results)
                _record(self._progress, ids, results)
            except BaseException as exc:  # handed to the caller by put()/finish()
                self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, ids: Sequence[Any], results: Sequence[RowResult]) -> None:
        """Queue a scored chunk (waits while one is already queued); raises the writer's error, if any."""
        self._raise()
        while True:
            try:
                self._queue.put((ids, results), timeout=0.2)
                return
            except queue.Full:
                self._raise()  # the writer stopped on an error: do not wait for it
                if not self._thread.is_alive():
                    raise RuntimeError("the write-behind thread stopped") from None

    def finish(self) -> None:
        """Wait until every queued chunk is committed; raise the writer's error, if any."""
        self._stop(timeout=None)
        self._raise()

    def close(self, timeout: float = 60.0) -> None:
        """Stop the writer after the chunks already queued (on success, failure or SIGTERM); idempotent."""
        self._stop(timeout=timeout)

    def _stop(self, timeout: float | None) -> None:
        if not self._thread.is_alive():
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._thread.is_alive():
            try:
                self._queue.put(_DONE, timeout=0.2)
                break
            except queue.Full:
                if deadline is not None and time.monotonic() > deadline:
                    return  # a write hangs (dead database): give up; the thread is a daemon
        self._thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))


def prefetched(chunks: Iterator[Any]) -> Iterator[Any]:
    """Read the next chunk in a thread while this one is scored (the database works while the model does).

    Only for sources whose reads do not depend on the previous chunk's write (the SQL keyset: the next
    page starts after the last id read, whatever was written). At most one chunk is read ahead.
    """
    ready: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def reader() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        ready.put(chunk, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            ready.put(exc)

    thread = threading.Thread(target=reader, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, int | float | str) or value is None else str(value)

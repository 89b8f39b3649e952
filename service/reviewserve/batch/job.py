"""The scoring loop: source chunk -> ``Predictor.predict`` (one vectorised call) -> sink write + commit.

The same loop drives a SQL table and files; it never touches scikit-learn, only the Predictor.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from reviewserve.batch.progress import Progress
from reviewserve.batch.results import STATUS_OK, RowResult, score_texts
from reviewserve.batch.retry import Retry
from reviewserve.model import Predictor

log = logging.getLogger("reviewserve.batch")

# Exit codes of `reviewserve score` (docs/batch.md).
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
    retry_for: float = 0.0,
    started: Callable[[Summary], None] | None = None,
) -> Summary:
    """Score every row of ``store`` still missing a prediction; return the summary.

    ``started`` receives the summary as soon as it exists (it is updated as chunks commit), so a
    caller can still report what was committed when the run stops. A transient error of the store
    (``store.transient(exc)``: a lost connection, a restarting database, SQLite's ``database is
    locked``) is retried for ``retry_for`` seconds: the chunk in flight was rolled back, and the
    reads start again after the last committed row (a read is of rows still missing a prediction).
    """
    retry = Retry(retry_for)
    transient: Callable[[BaseException], bool] = getattr(store, "transient", lambda _exc: False)
    while True:
        try:
            plan = store.plan()
            break
        except Exception as exc:
            if not transient(exc):
                raise
            retry.wait(exc)
    retry.ok()
    summary = Summary(
        model=predictor.name,
        version=predictor.version,
        shard=shard,
        total=plan.total,
        skipped=plan.done,
        dry_run=dry_run,
        extra=getattr(plan, "extra", {}),
    )
    if started is not None:
        started(summary)
    if dry_run:
        summary.would_score = plan.pending
        return summary
    progress = Progress(plan.pending, bar=bar)

    def counted() -> None:
        summary.read, summary.scored, summary.failed = progress.read, progress.scored, progress.failed
        summary.seconds = round(progress.seconds, 3)
        summary.rows_per_s = round(progress.read / progress.seconds, 1) if progress.seconds > 0 else 0.0
        if retry.attempts_total:
            summary.extra["retries"] = retry.attempts_total

    try:
        while True:
            chunks = store.chunks(chunk_size)
            if getattr(store, "prefetch", False):
                chunks = prefetched(chunks)
            try:
                for ids, texts in chunks:
                    results = score_texts(predictor, texts)
                    store.write(ids, results)
                    retry.ok()
                    ok = sum(1 for r in results if r.status == STATUS_OK)
                    progress.chunk(ok, len(results) - ok, last_id=_jsonable(ids[-1]))
                    counted()
                break
            except Exception as exc:
                if not transient(exc):
                    raise
                retry.wait(exc)  # raises Unavailable once the outage outlasts --retry-for
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
    finally:
        progress.close()
        counted()
        finish = getattr(store, "finish", None)
        if finish is not None:
            summary.extra.update(finish())
    return summary


_DONE = object()


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

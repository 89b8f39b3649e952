"""The scoring loop's write-behind (``run_job`` with a store that commits in a background thread).

An in-memory store stands in for the database here (the real databases are in test_sql.py: a failing
write, kill -9 and SIGTERM during background commits); the model is the committed one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reviewserve.batch.job import WriteBehind, run_job
from reviewserve.batch.progress import Progress
from reviewserve.batch.results import RowResult
from reviewserve.model import Predictor
from tests.batch.conftest import review_texts


@dataclass
class Plan:
    total: int
    pending: int
    done: int = 0


@dataclass
class MemoryStore:
    """``rows`` (id, text) read ``size`` at a time; ``write`` records each chunk (or fails on ``fail_on``)."""

    rows: list[tuple[int, str]]
    fail_on: int | None = None  # 1-based number of the chunk whose write raises
    prefetch: bool = True
    write_behind: bool = True
    read: int = 0
    written: list[list[int]] = field(default_factory=list)
    writer_threads: set[str] = field(default_factory=set)
    progress: Progress | None = None
    chunks_recorded_at_write: list[int] = field(default_factory=list)

    def plan(self) -> Plan:
        return Plan(len(self.rows), len(self.rows))

    def chunks(self, size: int) -> Iterator[tuple[list[Any], list[Any]]]:
        for start in range(0, len(self.rows), size):
            self.read += 1
            page = self.rows[start : start + size]
            yield [k for k, _ in page], [t for _, t in page]

    def write(self, ids: Sequence[Any], results: Sequence[RowResult]) -> None:
        self.writer_threads.add(threading.current_thread().name)
        if self.fail_on is not None and len(self.written) + 1 == self.fail_on:
            raise RuntimeError(f"write of chunk {self.fail_on} failed")
        assert len(ids) == len(results)
        self.written.append(list(ids))

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> Predictor:
    return Predictor.load(model_dir)


def test_chunks_are_committed_in_order_by_the_writer_thread(predictor: Predictor) -> None:
    rows = list(enumerate(review_texts(530), start=1))
    store = MemoryStore(rows)
    summary = run_job(store, predictor, chunk_size=50, bar=False)
    assert (summary.read, summary.scored, summary.failed, summary.exit_code) == (530, 530, 0, 0)
    assert [k for chunk in store.written for k in chunk] == [k for k, _ in rows]  # every row once, in order
    assert store.writer_threads == {"write-behind"}


def test_without_write_behind_the_loop_writes_itself(predictor: Predictor) -> None:
    store = MemoryStore(list(enumerate(review_texts(120), start=1)), write_behind=False)
    summary = run_job(store, predictor, chunk_size=50, bar=False)
    assert summary.read == 120 and len(store.written) == 3
    assert store.writer_threads == {threading.current_thread().name}


def test_a_failed_write_stops_the_loop_and_nothing_after_it_is_written(predictor: Predictor) -> None:
    store = MemoryStore(list(enumerate(review_texts(5000), start=1)), fail_on=2)
    with pytest.raises(RuntimeError, match="write of chunk 2 failed"):
        run_job(store, predictor, chunk_size=50, bar=False)
    assert len(store.written) == 1  # chunk 1 only; chunks scored after the failure were dropped
    # The loop stopped at once: the failed chunk, one queued, one being scored, one prefetched (+1 read ahead).
    assert store.read <= 6, store.read


def test_the_writer_records_progress_only_after_the_write_and_close_is_idempotent() -> None:
    progress = Progress(None, bar=False)
    seen: list[int] = []

    def write(ids: Sequence[Any], results: Sequence[RowResult]) -> None:
        seen.append(progress.read)  # what was recorded before this chunk's write returned

    writer = WriteBehind(write, progress)
    for start in range(0, 30, 10):
        writer.put(list(range(start, start + 10)), [RowResult("ok", "positive", 0.9, 0.9)] * 10)
    writer.finish()
    writer.close()
    assert seen == [0, 10, 20] and (progress.read, progress.scored, progress.chunks) == (30, 30, 3)


def test_put_raises_the_writer_error_instead_of_waiting_forever() -> None:
    progress = Progress(None, bar=False)
    gate = threading.Event()

    def write(ids: Sequence[Any], results: Sequence[RowResult]) -> None:
        gate.wait(5)
        raise OSError("disk full")

    writer = WriteBehind(write, progress)
    chunk = ([1], [RowResult("ok", "positive", 0.9, 0.9)])
    writer.put(*chunk)  # taken by the writer, which blocks in write()
    writer.put(*chunk)  # waits in the queue
    gate.set()
    with pytest.raises(OSError, match="disk full"):
        for _ in range(50):  # the queue frees up (the writer drops queued chunks after an error)
            writer.put(*chunk)
    with pytest.raises(OSError, match="disk full"):
        writer.finish()
    assert progress.read == 0

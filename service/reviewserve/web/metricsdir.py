"""The life of the multiprocess metrics folder: one per server, bounded by its live workers.

prometheus_client's multiprocess mode gives every worker process its own ``<type>_<pid>.db`` files and
sums all files of the folder at each scrape. Left alone, every recycled worker's files stay forever: the
folder (a memory-backed emptyDir in the chart) and the time of ``/metrics`` grow with uptime. Here:

- **One folder per server.** :func:`claim` (gunicorn master, before prometheus_client is imported) makes
  ``<PROMETHEUS_MULTIPROC_DIR>/server-<pid>-<random>/``, holds an exclusive ``flock`` on its ``owner.lock``
  for the server's life (inherited by its workers), and points ``PROMETHEUS_MULTIPROC_DIR`` at it. Folders
  whose lock nobody holds (their server is gone, even after ``kill -9``) are removed; a live server's
  folder is never touched. :func:`release` removes the folder when the server exits.
- **Folding.** :func:`fold` (gunicorn ``child_exit``: a recycle, ``kill -9``, a timeout) merges an exited
  worker's counter and histogram files into ``counter_archive.db`` / ``histogram_archive.db`` with
  prometheus_client's own merge code and file format, and removes all its files (its gauges drop out,
  whatever their mode). The folder holds about three files per live worker, the master's and two archives.
- **No counter goes down.** Folding and scraping exclude each other (``fold.lock``: exclusive for the fold,
  shared for :class:`FoldAwareCollector`), so a scrape sees a worker either in its files or in the
  archive, never both or neither. The collector adds the files in sorted order, so a float sum (a
  histogram's ``_sum``) only grows while workers count; a fold changes the order of the additions, so it
  compares what a scrape sees before and after and raises the archive by the rounding difference (an ulp)
  if a float total would otherwise come out a hair lower. Counts are whole numbers and stay exact.
"""

from __future__ import annotations

import atexit
import fcntl
import glob
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

log = logging.getLogger("reviewserve.metrics")

SERVER_PREFIX = "server-"
OWNER_LOCK = "owner.lock"  # held (exclusive) by a live server for its whole life
FOLD_LOCK = "fold.lock"  # exclusive while folding, shared while a scrape reads the files
CLAIM_LOCK = ".claim.lock"  # in the base folder: one server at a time sweeps and creates its folder
ARCHIVE = "archive"  # the "pid" part of an archive file's name: counter_archive.db
FOLDED_TYPES = ("counter", "histogram", "summary")  # whose totals outlive the worker
MAX_ROUNDING_STEPS = 64

_claimed: dict[str, object] = {}  # this process's folder, owner lock fd and pid (see claim)

SampleKey = tuple[str, str, str, str, tuple[tuple[str, str], ...]]  # type, metric, help, sample, labels


@contextmanager
def _flock(path: Path, operation: int) -> Iterator[None]:
    """Hold ``flock(operation)`` on ``path`` (created if missing) for the with-block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


def claim(base: Path) -> Path:
    """Create and lock this server's folder under ``base``; remove folders of servers that are gone.

    Sets ``PROMETHEUS_MULTIPROC_DIR`` to the new folder (call it before prometheus_client is imported).
    Idempotent within a process: gunicorn re-reads its config on SIGHUP.
    """
    if _claimed.get("pid") == os.getpid():
        return Path(str(_claimed["folder"]))
    base.mkdir(parents=True, exist_ok=True)
    with _flock(base / CLAIM_LOCK, fcntl.LOCK_EX):
        removed = sweep(base)
        folder = Path(tempfile.mkdtemp(prefix=f"{SERVER_PREFIX}{os.getpid()}-", dir=base))
        owner = os.open(folder / OWNER_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _claimed.update(folder=folder, owner=owner, pid=os.getpid())
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    atexit.register(release)  # also when gunicorn exits without on_exit (e.g. the port is taken)
    if removed:
        log.info("removed metrics folders of stopped servers", extra={"folders": removed})
    return folder


def sweep(base: Path) -> list[str]:
    """Remove the server folders under ``base`` whose owner lock nobody holds; return their names.

    Call with the claim lock held: a folder without an owner lock is then one whose server died
    while creating it.
    """
    removed = []
    for folder in sorted(base.glob(f"{SERVER_PREFIX}*")):
        if not folder.is_dir():
            continue
        try:
            fd = os.open(folder / OWNER_LOCK, os.O_RDWR)
        except FileNotFoundError:
            fd = None
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live server (or a worker it left behind) holds it
        finally:
            if fd is not None:
                os.close(fd)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    return removed


def release() -> None:
    """Remove this server's folder (the master at exit; no-op in any other process)."""
    if _claimed.get("pid") != os.getpid():
        return
    folder = Path(str(_claimed.pop("folder")))
    owner = _claimed.pop("owner")
    _claimed.clear()
    shutil.rmtree(folder, ignore_errors=True)
    os.close(int(str(owner)))


def _pid_part(path: str) -> str:
    """``counter_123.db`` -> ``123``; ``gauge_livesum_123.db`` -> ``123``; ``counter_archive.db`` -> ``archive``."""
    return os.path.basename(path)[: -len(".db")].rsplit("_", 1)[-1]


def db_files(folder: Path | str) -> list[str]:
    """The metric files of ``folder``, in the one order every scrape and fold adds them up."""
    return sorted(glob.glob(os.path.join(folder, "*.db")))


def readable(files: Iterable[str]) -> list[str]:
    """``files`` minus those a worker has just created and not yet sized (prometheus_client cannot read them)."""
    out = []
    for f in files:
        try:
            if os.path.getsize(f) >= 8:  # the header; files only grow, so it cannot shrink before the read
                out.append(f)
        except FileNotFoundError:  # a live gauge marked dead by the library
            continue
    return out


def view(files: Iterable[str]) -> dict[SampleKey, float]:
    """What a scrape of ``files`` shows for every counter, histogram and summary sample."""
    out: dict[SampleKey, float] = {}
    for metric in MultiProcessCollector.merge(readable(files), accumulate=True):
        if metric.type in FOLDED_TYPES:
            for s in metric.samples:
                out[(metric.type, metric.name, metric.documentation, s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _archive_key(sample: SampleKey) -> str:
    """The key of ``sample`` in an archive file (prometheus_client's ``mmap_key`` format)."""
    _, metric_name, documentation, name, labels = sample
    return json.dumps([metric_name, name, dict(labels), documentation], sort_keys=True)


def _write_archive(path: Path, entries: dict[str, float]) -> None:
    """Write ``entries`` as a prometheus_client file and put it in place in one rename."""
    tmp = path.with_suffix(".db.tmp")  # not *.db: a scrape never reads a half-written archive
    tmp.unlink(missing_ok=True)
    out = MmapedDict(str(tmp))
    try:
        for key, value in entries.items():
            out.write_value(key, value, 0.0)
    finally:
        out.close()
    os.replace(tmp, path)


def _merged_entries(files: list[str]) -> dict[str, float]:
    """Per-key sums of ``files`` as raw file entries (histogram buckets not cumulated)."""
    entries: dict[str, float] = {}
    for metric in MultiProcessCollector.merge(files, accumulate=False):
        for s in metric.samples:
            key = (metric.type, metric.name, metric.documentation, s.name, tuple(sorted(s.labels.items())))
            entries[_archive_key(key)] = s.value
    return entries


def fold(pid: int, folder: Path | str | None = None) -> int:
    """Fold exited worker ``pid``'s counters and histograms into the archive; remove all its files.

    Returns the number of files removed. Runs in the gunicorn master (``child_exit``).
    """
    folder = Path(folder or os.environ["PROMETHEUS_MULTIPROC_DIR"])
    started = time.perf_counter()
    with _flock(folder / FOLD_LOCK, fcntl.LOCK_EX):
        files = db_files(folder)
        dead = [f for f in files if _pid_part(f) == str(pid)]
        if not dead:
            return 0
        before = view(files)
        archives: dict[str, dict[str, float]] = {}
        for typ in FOLDED_TYPES:
            own = [f for f in dead if os.path.basename(f).startswith(typ + "_")]
            if not own:
                continue
            archive = folder / f"{typ}_{ARCHIVE}.db"
            sources = ([str(archive)] if archive.exists() else []) + readable(own)
            archives[typ] = _merged_entries(sources)
            _write_archive(archive, archives[typ])
        for f in dead:
            os.unlink(f)
        mark_process_dead(pid, str(folder))  # the library's own bookkeeping (live gauges; already gone)
        _keep_totals_from_falling(folder, before, archives)
    log.debug(
        "folded worker metrics", extra={"worker": pid, "files": len(dead), "ms": (time.perf_counter() - started) * 1e3}
    )
    return len(dead)


def _keep_totals_from_falling(
    folder: Path, before: dict[SampleKey, float], archives: dict[str, dict[str, float]]
) -> None:
    """Raise archive entries by the float rounding a fold may cost, until no total is below ``before``."""
    for _ in range(MAX_ROUNDING_STEPS):
        after = view(db_files(folder))
        short = {k: v - after.get(k, 0.0) for k, v in before.items() if after.get(k, 0.0) < v}
        if not short:
            return
        changed = set()
        for sample, deficit in short.items():
            entries = archives.get(sample[0])
            key = _archive_key(sample)
            if entries is None or key not in entries:
                log.error("a metric total fell during a fold", extra={"sample": sample[3], "deficit": deficit})
                continue
            raised = entries[key] + deficit
            entries[key] = raised if raised > entries[key] else math.nextafter(entries[key], math.inf)
            changed.add(sample[0])
        if not changed:
            return
        for typ in changed:
            _write_archive(folder / f"{typ}_{ARCHIVE}.db", archives[typ])
    log.error("metric totals still short after %d rounding steps", MAX_ROUNDING_STEPS)


class FoldAwareCollector(MultiProcessCollector):
    """prometheus_client's multiprocess collector, reading under the fold lock and in a fixed order."""

    def collect(self):  # type: ignore[no-untyped-def]  # (prometheus_client's signature)
        """Merge every metric file of the folder; never in the middle of a fold."""
        with _flock(Path(self._path) / FOLD_LOCK, fcntl.LOCK_SH):
            return list(self.merge(readable(db_files(self._path)), accumulate=True))


def usage(folder: Path | str) -> dict[str, int]:
    """Files and bytes (allocated, as a tmpfs counts them) in ``folder`` and below."""
    files = 0
    allocated = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                st = os.stat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            files += 1
            allocated += st.st_blocks * 512
    return {"files": files, "bytes": allocated}

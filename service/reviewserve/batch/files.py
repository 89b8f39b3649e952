"""Files source and sink: CSV, JSON Lines and Parquet, local or in object storage (fsspec: ``s3://``...).

One output file per input, same format, written under a temporary name and renamed when complete; then
a small JSON marker records the finished input (with its size and ETag/mtime). A rerun skips inputs
whose marker matches; a killed run left no marker for the file it was on, so only that file is redone.

Layout under ``--output`` (default: ``predictions/`` beside the inputs)::

    OUTPUT/<model name>/<model version>/<input path relative to the glob's folder>     predictions
    OUTPUT/<model name>/<model version>/_done/<same relative path>.json                 finished-input record

Output columns: the id column (the input's ``--id-column``; ``row``, the 0-based row number, when the
input has none), model_name, model_version, label, probability, positive_probability, status, error,
scored_at -- the same as the predictions table.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import posixpath
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import fsspec
from fsspec.core import url_to_fs
from fsspec.utils import get_protocol

from reviewserve.batch.results import STATUS_OK, RowResult, Unreadable

log = logging.getLogger("reviewserve.batch")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
DONE_DIR = "_done"
CLAIMS_DIR = "_claims"
CLAIM_LEASE = 300.0  # seconds a claim of a job that stopped renewing it keeps other jobs off its input
MAX_READS = 3  # an input that keeps changing while it is scored is left pending after this many reads
ROW_COLUMN = "row"
_GLOB_CHARS = "*?["


class FilesError(RuntimeError):
    """Inputs or output that cannot be used (message says why)."""


def is_file_source(source: str) -> bool:
    """True for a local path/glob or an fsspec URL (``s3://``, ``file://``...); False for a database URL."""
    if "://" not in source:
        return True
    return get_protocol(source) in fsspec.available_protocols()


def _format(path: str) -> str | None:
    return FORMATS.get(posixpath.splitext(path)[1].lower())


def _glob_base(path: str) -> str:
    """The folder part of ``path`` before its first glob character (the root for relative output names)."""
    cut = min((path.index(c) for c in _GLOB_CHARS if c in path), default=None)
    if cut is None:
        return posixpath.dirname(path)
    return posixpath.dirname(path[:cut])


@dataclass
class FilesPlan:
    """Inputs found, finished (by marker) and pending; rows in the finished ones."""

    pending_files: list[str]
    done_files: list[str]
    done: int
    total: int | None = None
    pending: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _version(info: dict[str, Any]) -> tuple[Any, str]:
    """(size, fingerprint): what must be unchanged for a finished input to count as done."""
    return info.get("size"), _fingerprint(info)


def _fingerprint(info: dict[str, Any]) -> str:
    """What identifies a version of a file: its ETag in object storage, else its mtime."""
    for key in ("ETag", "etag", "mtime", "LastModified", "last_modified", "created"):
        if info.get(key) is not None:
            return str(info[key]).strip('"')
    return ""


class ClaimLost(FilesError):
    """Another job took over this job's claim on an input (this job had stopped renewing it)."""


class Claim:
    """A lease on one input, as a small JSON file created exclusively beside the outputs.

    Works on a local folder (``O_EXCL``) and on S3 (a conditional PUT, ``If-None-Match: *``). The
    holder renews it while it scores (at most every third of the lease). A claim is stale when its
    lease has run out, or, on the same host, when its process is gone (a ``kill -9`` frees the input
    at once locally); a stale claim is removed and claimed afresh.
    """

    def __init__(self, fs: Any, path: str, job: str, lease: float) -> None:
        self.fs, self.path, self.job, self.lease = fs, path, job, lease
        self.holder: dict[str, Any] | None = None
        self._renewed = 0.0

    def _record(self) -> bytes:
        expires = time.time() + self.lease
        record = {"job": self.job, "host": socket.gethostname(), "pid": os.getpid(), "expires": expires}
        return json.dumps(record).encode("utf-8")

    def _create(self) -> bool:
        """Create the claim file only if it does not exist; False if it does."""
        self.fs.makedirs(posixpath.dirname(self.path), exist_ok=True)
        try:
            if type(self.fs).__name__ == "LocalFileSystem":
                with open(self.path, "xb") as handle:
                    handle.write(self._record())
            else:
                self.fs.pipe_file(self.path, self._record(), mode="create")
        except FileExistsError:
            return False
        except OSError as exc:  # S3's 412 Precondition Failed
            if "412" in str(exc) or "PreconditionFailed" in str(exc):
                return False
            raise
        self._renewed = time.monotonic()
        return True

    def _read(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.fs.cat_file(self.path))
        except (FileNotFoundError, ValueError):
            return None

    def _stale(self, holder: dict[str, Any] | None) -> bool:
        if holder is None:
            return True
        if float(holder.get("expires", 0)) < time.time():
            return True
        if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            try:
                os.kill(holder["pid"], 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False

    def acquire(self) -> bool:
        """Claim the input; False if another live job holds it."""
        for _ in range(3):
            if self._create():
                return True
            self.holder = self._read()
            if not self._stale(self.holder):
                return False
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(self.path)
        return False

    def renew(self) -> None:
        """Extend the lease (at most every third of it); raise :class:`ClaimLost` if it is not ours any more."""
        if time.monotonic() - self._renewed < self.lease / 3:
            return
        holder = self._read()
        if holder is None or holder.get("job") != self.job:
            raise ClaimLost(f"{self.path}: claim taken over by job {holder and holder.get('job')}")
        self.fs.pipe_file(self.path, self._record())
        self._renewed = time.monotonic()

    def release(self) -> None:
        """Remove the claim if it is still ours."""
        holder = self._read()
        if holder is not None and holder.get("job") == self.job:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(self.path)


class _Output:
    """The output of one input file, open under its temporary name."""

    def __init__(self, fs: Any, tmp: str, fmt: str, id_name: str) -> None:
        self.fs, self.tmp, self.fmt, self.id_name = fs, tmp, fmt, id_name
        self.handle = fs.open(tmp, "xb") if type(fs).__name__ == "LocalFileSystem" else fs.open(tmp, "wb")
        self.writer: Any = None
        self.rows = self.failed = 0

    def write(self, ids: Sequence[Any], results: Sequence[RowResult], model: str, version: str) -> None:
        now = datetime.now(UTC)
        self.rows += len(results)
        self.failed += sum(1 for r in results if r.status != STATUS_OK)
        if self.fmt == "jsonl":
            stamp = now.isoformat()
            for key, r in zip(ids, results, strict=True):
                record = {
                    self.id_name: key,
                    "model_name": model,
                    "model_version": version,
                    "label": r.label,
                    "probability": r.probability,
                    "positive_probability": r.positive_probability,
                    "status": r.status,
                    "error": r.error,
                    "scored_at": stamp,
                }
                self.handle.write((json.dumps(record, default=str) + "\n").encode("utf-8"))
            return
        import pyarrow as pa

        table = pa.table(
            {
                self.id_name: pa.array(ids),
                "model_name": pa.array([model] * len(ids), pa.string()),
                "model_version": pa.array([version] * len(ids), pa.string()),
                "label": pa.array([r.label for r in results], pa.string()),
                "probability": pa.array([r.probability for r in results], pa.float64()),
                "positive_probability": pa.array([r.positive_probability for r in results], pa.float64()),
                "status": pa.array([r.status for r in results], pa.string()),
                "error": pa.array([r.error for r in results], pa.string()),
                "scored_at": pa.array([now] * len(ids), pa.timestamp("us", tz="UTC")),
            }
        )
        if self.writer is None:
            if self.fmt == "csv":
                import pyarrow.csv as pacsv

                self.writer = pacsv.CSVWriter(self.handle, table.schema)
            else:
                import pyarrow.parquet as pq

                self.writer = pq.ParquetWriter(self.handle, table.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.handle.close()


class FileStore:
    """Reads inputs matching a path/glob chunk by chunk; writes one predictions file per input."""

    def __init__(
        self,
        source: str,
        *,
        output: str | None = None,
        id_column: str = "id",
        text_column: str = "text",
        model_name: str,
        model_version: str,
        claim_lease: float = CLAIM_LEASE,
    ) -> None:
        self.fs, pattern = url_to_fs(source)
        self.protocol = get_protocol(source)
        self.id_column, self.text_column = id_column, text_column
        self.model_name, self.model_version = model_name, model_version
        has_glob = any(c in pattern for c in _GLOB_CHARS)
        try:
            found = sorted(self.fs.glob(pattern)) if has_glob else ([pattern] if self.fs.isfile(pattern) else [])
        except Exception as exc:
            raise FilesError(f"cannot list {source!r}: {exc}") from exc
        base = _glob_base(pattern) if has_glob else posixpath.dirname(pattern)
        if output is None:
            self.out_fs, out_root = self.fs, posixpath.join(base, "predictions")
            self.base: str | None = base  # outputs named by their path under the glob's folder
        else:
            self.out_fs, out_root = url_to_fs(output)
            self.base = None  # a shared --output: outputs named by the input's whole path (unique per input)
        out_root = posixpath.normpath(out_root)  # data/./out is data/out: never read back as an input
        self.out_dir = posixpath.join(out_root, _safe(model_name), _safe(model_version))
        self.job = uuid.uuid4().hex[:12]  # names this job's temporary files and claims
        self.claim_lease = claim_lease
        self.inputs = [p for p in found if _format(p) and not _under(p, out_root)]
        unknown = [p for p in found if not _format(p)]
        if not self.inputs:
            hint = f" ({len(unknown)} file(s) of other types: {unknown[:3]})" if unknown else ""
            if any(p.endswith((".db", ".sqlite", ".sqlite3")) for p in unknown):
                hint += "; for a SQLite database use --source sqlite:///PATH"
            raise FilesError(f"no CSV/JSONL/Parquet input matches {source!r}{hint}")
        self._output: _Output | None = None
        self._plan: FilesPlan | None = None
        self._skipped = 0
        self.finished: list[str] = []  # inputs this run finished
        self.busy: list[str] = []  # inputs another live job held a claim on
        self.changed = 0  # inputs that changed while being scored (each then scored again)

    def _relative(self, path: str) -> str:
        if self.base is None:
            return posixpath.normpath(path).lstrip("/")
        return posixpath.relpath(path, self.base) if self.base else path.lstrip("/")

    def output_path(self, path: str) -> str:
        """Where the predictions of input ``path`` go."""
        return posixpath.join(self.out_dir, self._relative(path))

    def marker_path(self, path: str) -> str:
        """The finished-input record of ``path``."""
        return posixpath.join(self.out_dir, DONE_DIR, self._relative(path) + ".json")

    def _url(self, path: str) -> str:
        return self.fs.unstrip_protocol(path)

    def _marker(self, path: str) -> dict[str, Any] | None:
        marker = self.marker_path(path)
        try:
            if not self.out_fs.exists(marker):
                return None
            record = json.loads(self.out_fs.cat_file(marker))
        except (OSError, ValueError):
            return None
        info = self.fs.info(path)
        if record.get("input") != self._url(path) or (record.get("size"), record.get("fingerprint")) != _version(info):
            return None  # another input's record, or the input changed since it was scored: score it
        return record

    def plan(self) -> FilesPlan:
        """Which inputs are finished (a matching marker) and which are still to do."""
        pending, done, rows = [], [], 0
        for path in self.inputs:
            record = self._marker(path)
            if record is None:
                pending.append(path)
            else:
                done.append(path)
                rows += int(record.get("rows", 0))
        extra = {"files": len(self.inputs), "files_done": len(done), "files_pending": len(pending)}
        self._plan = FilesPlan(pending, done, rows, extra=extra)
        self._skipped = len(done)
        return self._plan

    def finish(self) -> dict[str, Any]:
        """The files' counts at the end of the run: done (before or by this run), pending, busy, changed."""
        finished = self._skipped + len(self.finished)
        return {"files": len(self.inputs), "files_skipped": self._skipped, "files_done": finished,
                "files_pending": len(self.inputs) - finished, "files_busy": len(self.busy),
                "files_changed": self.changed}  # fmt: skip

    def chunks(self, size: int) -> Iterator[tuple[list[Any], list[Any]]]:
        """Yield (ids, texts) of every pending input in turn; finish each file before the next.

        Each input is first claimed (:class:`Claim`): an input another live job is scoring is left to it
        (``files_busy``). Its size and ETag/mtime are read before it is opened; if they differ once it
        is read, the output is dropped and the file scored again (at most ``MAX_READS`` times).
        """
        plan = self._plan or self.plan()
        for path in plan.pending_files:
            claim = Claim(self.out_fs, self.claim_path(path), self.job, self.claim_lease)
            if not claim.acquire():
                self.busy.append(path)
                log.warning("file claimed by another job, left to it",
                            extra={"input": self._url(path), "claim": claim.holder})  # fmt: skip
                continue
            try:
                if self._marker(path) is not None:  # finished by another job since the plan
                    continue
                for attempt in range(1, MAX_READS + 1):
                    before = self._fresh_info(path)
                    yield from self._score_file(path, size, claim)
                    after = self._fresh_info(path)
                    if _version(after) == _version(before):
                        self._publish(path, before)
                        break
                    self.changed += 1
                    self._discard()
                    log.warning("input changed while it was scored, scoring it again",
                                extra={"input": self._url(path), "attempt": attempt})  # fmt: skip
            finally:
                self._discard()
                claim.release()

    def _fresh_info(self, path: str) -> dict[str, Any]:
        """The input's size and ETag/mtime now: object stores answer ``info`` from the listing cached by
        the glob, which would hide a change made while the input was read."""
        self.fs.invalidate_cache(path)
        return self.fs.info(path)

    def claim_path(self, path: str) -> str:
        """The claim (lease) file of input ``path``."""
        return posixpath.join(self.out_dir, CLAIMS_DIR, self._relative(path) + ".claim")

    def _score_file(self, path: str, size: int, claim: Claim) -> Iterator[tuple[list[Any], list[Any]]]:
        fmt = _format(path)
        assert fmt is not None
        reader = _READERS[fmt](self.fs, path, self.id_column, self.text_column, size)
        id_name = next(reader)
        final = self.output_path(path)
        # This job's own temporary name, created exclusively: two jobs never write one file.
        tmp = posixpath.join(posixpath.dirname(final), f".{posixpath.basename(final)}.{self.job}.inprogress")
        self.out_fs.makedirs(posixpath.dirname(final), exist_ok=True)
        # Holding the claim, any other job's temporary output of this input is a leftover (kill -9): remove it.
        pattern = posixpath.join(posixpath.dirname(final), f".{posixpath.basename(final)}.*.inprogress")
        for leftover in self.out_fs.glob(pattern):
            with contextlib.suppress(FileNotFoundError):
                self.out_fs.rm(leftover)
        self._output = _Output(self.out_fs, tmp, fmt, id_name)
        for chunk in reader:
            claim.renew()  # raises ClaimLost if another job took the input over
            yield chunk

    def _publish(self, path: str, info: dict[str, Any]) -> None:
        output = self._output
        assert output is not None
        output.close()
        final = self.output_path(path)
        self.out_fs.mv(output.tmp, final)
        self._output = None
        self._write_marker(path, final, output, info)
        self.finished.append(path)
        url = self.out_fs.unstrip_protocol(final)
        log.info("file finished", extra={"input": self._url(path), "output": url, "rows": output.rows})

    def _discard(self) -> None:
        """Drop the current temporary output (a stopped run or a changed input leaves none behind)."""
        output, self._output = self._output, None
        if output is None:
            return
        with contextlib.suppress(Exception):
            output.close()
        with contextlib.suppress(Exception):
            self.out_fs.rm(output.tmp)

    def _write_marker(self, path: str, final: str, output: _Output, info: dict[str, Any]) -> None:
        record = {
            "input": self._url(path),
            "output": self.out_fs.unstrip_protocol(final),
            "size": info.get("size"),
            "fingerprint": _fingerprint(info),
            "rows": output.rows,
            "failed": output.failed,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "finished_at": datetime.now(UTC).isoformat(),
        }
        marker = self.marker_path(path)
        self.out_fs.makedirs(posixpath.dirname(marker), exist_ok=True)
        tmp = f"{marker}.{self.job}.inprogress"
        self.out_fs.pipe_file(tmp, json.dumps(record, indent=1).encode("utf-8"))
        self.out_fs.mv(tmp, marker)

    def write(self, ids: Sequence[Any], results: Sequence[RowResult]) -> None:
        """Append one chunk's predictions to the current input's temporary output."""
        assert self._output is not None, "write() outside chunks()"
        self._output.write(ids, results, self.model_name, self.model_version)

    def close(self) -> None:
        """Nothing to release (each file is closed when finished)."""


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"


def _under(path: str, folder: str) -> bool:
    return posixpath.normpath(path).startswith(posixpath.normpath(folder).rstrip("/") + "/")


# ---------------------------------------------------------------- readers ---
# Each reader is a generator: first it yields the output id column's name, then (ids, texts) chunks.


def _columns_error(path: str, text_column: str, names: list[str]) -> FilesError:
    return FilesError(f"{path}: no text column {text_column!r} (--text-column); columns are {names}")


def _read_csv(fs: Any, path: str, id_column: str, text_column: str, size: int) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with fs.open(path, "rb") as handle:  # the header only (a streaming reader left open can abort at exit)
        names = next(csv.reader(io.TextIOWrapper(handle, encoding="utf-8-sig", newline="")), [])
    if text_column not in names:
        raise _columns_error(path, text_column, names)
    has_id = id_column in names
    yield id_column if has_id else ROW_COLUMN
    wanted = [id_column, text_column] if has_id else [text_column]
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in wanted}, include_columns=wanted, strings_can_be_null=False
    )
    with fs.open(path, "rb") as handle:
        reader = pacsv.open_csv(
            handle,
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=convert,
        )
        yield from _rechunk(_batches(reader), has_id, id_column, text_column, size)


def _read_parquet(fs: Any, path: str, id_column: str, text_column: str, size: int) -> Iterator[Any]:
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        names = parquet.schema_arrow.names
        if text_column not in names:
            raise _columns_error(path, text_column, names)
        has_id = id_column in names
        yield id_column if has_id else ROW_COLUMN
        wanted = [id_column, text_column] if has_id else [text_column]
        yield from _rechunk(parquet.iter_batches(batch_size=size, columns=wanted), has_id, id_column, text_column, size)


def _batches(reader: Any) -> Iterator[Any]:
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return


def _rechunk(batches: Iterator[Any], has_id: bool, id_column: str, text_column: str, size: int) -> Iterator[Any]:
    """Arrow record batches of any size -> (ids, texts) lists of exactly ``size`` (last one shorter)."""
    ids: list[Any] = []
    texts: list[Any] = []
    row = 0
    for batch in batches:
        column_texts = batch.column(text_column).to_pylist()
        texts.extend(column_texts)
        if has_id:
            ids.extend(batch.column(id_column).to_pylist())
        else:
            ids.extend(range(row, row + len(column_texts)))
        row += len(column_texts)
        while len(texts) >= size:
            yield ids[:size], texts[:size]
            del ids[:size], texts[:size]
    if texts:
        yield ids, texts


def _read_jsonl(fs: Any, path: str, id_column: str, text_column: str, size: int) -> Iterator[Any]:
    with fs.open(path, "rb") as handle:
        first = handle.readline()
    try:
        has_id = id_column in json.loads(first)
    except (ValueError, TypeError):
        has_id = False
    yield id_column if has_id else ROW_COLUMN
    ids: list[Any] = []
    texts: list[Any] = []
    with fs.open(path, "rb") as handle:
        for row, line in enumerate(handle):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError(f"a JSON {type(record).__name__}, not an object")
                ids.append(record.get(id_column) if has_id else row)
                texts.append(record.get(text_column))
            except ValueError as exc:
                ids.append(None if has_id else row)  # the line's id is unknown; the reason names the line
                texts.append(Unreadable(f"invalid_json: line {row + 1}: {exc}"))
            if len(texts) >= size:
                yield ids, texts
                ids, texts = [], []
    if texts:
        yield ids, texts


_READERS = {"csv": _read_csv, "parquet": _read_parquet, "jsonl": _read_jsonl}

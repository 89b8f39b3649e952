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

import csv
import io
import json
import logging
import posixpath
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


def _fingerprint(info: dict[str, Any]) -> str:
    """What identifies a version of a file: its ETag in object storage, else its mtime."""
    for key in ("ETag", "etag", "mtime", "LastModified", "last_modified", "created"):
        if info.get(key) is not None:
            return str(info[key]).strip('"')
    return ""


class _Output:
    """The output of one input file, open under its temporary name."""

    def __init__(self, fs: Any, tmp: str, fmt: str, id_name: str) -> None:
        self.fs, self.tmp, self.fmt, self.id_name = fs, tmp, fmt, id_name
        self.handle = fs.open(tmp, "wb")
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
        else:
            self.out_fs, out_root = url_to_fs(output)
        self.out_dir = posixpath.join(out_root, _safe(model_name), _safe(model_version))
        self.base = base
        self.inputs = [p for p in found if _format(p) and not _under(p, out_root)]
        unknown = [p for p in found if not _format(p)]
        if not self.inputs:
            hint = f" ({len(unknown)} file(s) of other types: {unknown[:3]})" if unknown else ""
            if any(p.endswith((".db", ".sqlite", ".sqlite3")) for p in unknown):
                hint += "; for a SQLite database use --source sqlite:///PATH"
            raise FilesError(f"no CSV/JSONL/Parquet input matches {source!r}{hint}")
        self._output: _Output | None = None
        self._plan: FilesPlan | None = None

    def _relative(self, path: str) -> str:
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
        if record.get("size") != info.get("size") or record.get("fingerprint") != _fingerprint(info):
            return None  # the input changed since it was scored: score it again
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
        return self._plan

    def chunks(self, size: int) -> Iterator[tuple[list[Any], list[Any]]]:
        """Yield (ids, texts) of every pending input in turn; finish each file before the next."""
        plan = self._plan or self.plan()
        for path in plan.pending_files:
            fmt = _format(path)
            assert fmt is not None
            reader = _READERS[fmt](self.fs, path, self.id_column, self.text_column, size)
            id_name = next(reader)
            final = self.output_path(path)
            tmp = posixpath.join(posixpath.dirname(final), f".{posixpath.basename(final)}.inprogress")
            self.out_fs.makedirs(posixpath.dirname(final), exist_ok=True)
            self._output = _Output(self.out_fs, tmp, fmt, id_name)
            try:
                yield from reader
                output = self._output
                output.close()
                self.out_fs.mv(tmp, final)
                self._write_marker(path, final, output)
                log.info(
                    "file finished",
                    extra={
                        "input": self._url(path),
                        "output": self.out_fs.unstrip_protocol(final),
                        "rows": output.rows,
                    },
                )
            finally:
                self._output = None

    def _write_marker(self, path: str, final: str, output: _Output) -> None:
        info = self.fs.info(path)
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
        tmp = marker + ".inprogress"
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
    return path.startswith(folder.rstrip("/") + "/")


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

"""SQL source and sink (SQLAlchemy Core): keyset-paged reads of what is missing, an upsert per chunk.

Every identifier goes through SQLAlchemy ``Table``/``Column`` objects (the source table is reflected),
so names given on the command line are quoted by the dialect, never pasted into SQL.

- Reads: ``WHERE id > :last AND <shard> AND NOT EXISTS (a prediction for this id, model, version)
  ORDER BY id LIMIT :chunk`` -- no OFFSET, no full-table load, and a rerun reads only missing rows.
- Writes: ``INSERT ... ON CONFLICT (review_id, model_name, model_version) DO UPDATE`` (PostgreSQL,
  SQLite), committed per chunk: a kill at any moment loses at most the chunk in flight, and the
  primary key makes a second write of the same row impossible.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    and_,
    create_engine,
    event,
    exists,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchTableError

from reviewserve.batch.results import STATUS_OK, RowResult
from reviewserve.batch.shard import Shard, register_sqlite_functions, shard_filter

PREDICTION_COLUMNS = (
    "review_id",
    "model_name",
    "model_version",
    "label",
    "probability",
    "positive_probability",
    "status",
    "error",
    "scored_at",
)
KEY_COLUMNS = ("review_id", "model_name", "model_version")
SUPPORTED_DIALECTS = ("postgresql", "sqlite")


class SourceError(RuntimeError):
    """The database, table or columns named on the command line cannot be used (message says why)."""


def database_url(url: str) -> Any:
    """Parse a SQLAlchemy URL; plain ``postgresql://`` (and ``postgres://``) use psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise SourceError(f"not a database URL: {url!r} ({exc})") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    register_sqlite_functions(dbapi_connection)

    def decode(raw: bytes) -> str | bytes:
        # Text SQLite holds but is not UTF-8: keep the bytes so that row alone is reported, not the chunk.
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw

    dbapi_connection.text_factory = decode
    cursor = dbapi_connection.cursor()
    # WAL: shards read while another writes; readers never block the writer.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for PostgreSQL (psycopg 3) or SQLite (WAL, 60 s busy timeout, the shard hash function)."""
    parsed = database_url(url)
    dialect = parsed.get_backend_name()
    if dialect not in SUPPORTED_DIALECTS:
        raise SourceError(f"database {dialect!r} is not supported; use PostgreSQL or SQLite")
    if dialect == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": 60})
        event.listen(engine, "connect", _sqlite_connect)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def predictions_table(metadata: MetaData, name: str, id_type: Any) -> Table:
    """The predictions table: one row per (review id, model name, model version)."""
    return Table(
        name,
        metadata,
        Column("review_id", id_type, nullable=False),
        Column("model_name", String(200), nullable=False),
        Column("model_version", String(100), nullable=False),
        Column("label", String(100)),
        Column("probability", Float),
        Column("positive_probability", Float),
        Column("status", String(10), nullable=False),
        Column("error", Text),
        Column("scored_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint(*KEY_COLUMNS),
    )


@dataclass(frozen=True)
class Plan:
    """Rows of this shard in the source, and how many of them still need a prediction."""

    total: int
    pending: int

    @property
    def done(self) -> int:
        """Rows that already have a prediction for this model version."""
        return self.total - self.pending


class SqlStore:
    """Reads missing rows of ``table`` in keyset chunks; upserts their predictions and commits per chunk."""

    prefetch = True  # the next keyset page does not depend on this page's write: read it ahead

    def __init__(
        self,
        url: str,
        table: str,
        *,
        id_column: str = "id",
        text_column: str = "text",
        predictions: str = "predictions",
        model_name: str,
        model_version: str,
        shard: Shard | None = None,
        retry_errors: bool = False,
    ) -> None:
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        self.model_name, self.model_version = model_name, model_version
        self.metadata = MetaData()
        try:
            self.source = Table(table, self.metadata, autoload_with=self.engine)
        except NoSuchTableError:
            raise SourceError(f"table {table!r} does not exist in {self.engine.url.render_as_string()}") from None
        except Exception as exc:  # unreachable server, bad credentials, ...
            raise SourceError(f"cannot read table {table!r}: {exc}") from exc
        columns = list(self.source.columns.keys())
        for option, name in (("--id-column", id_column), ("--text-column", text_column)):
            if name not in self.source.columns:
                raise SourceError(f"{option} {name!r} is not a column of table {table!r}; it has {columns}")
        self.id = self.source.columns[id_column]
        self.text = self.source.columns[text_column]
        # Its own MetaData: a --predictions-table named like the source must fail the check below, not clash here.
        self.predictions = predictions_table(MetaData(), predictions, self.id.type)
        self.predictions_exists = inspect(self.engine).has_table(predictions)
        if self.predictions_exists:
            self._check_predictions_columns(predictions)
        self.shard_condition = shard_filter(self.id, shard or Shard(), self.dialect)
        self.retry_errors = retry_errors
        self._unanalyzed = 0  # rows written since the planner's statistics were last refreshed
        self._analyzed_at = 0

    def _check_predictions_columns(self, name: str) -> None:
        found = {c["name"] for c in inspect(self.engine).get_columns(name)}
        missing = [c for c in PREDICTION_COLUMNS if c not in found]
        if missing:
            raise SourceError(f"table {name!r} exists but is not a predictions table: it lacks {missing}")

    def create_predictions_table(self) -> None:
        """Create the predictions table if it is missing (safe when several shards race to do it)."""
        if self.predictions_exists:
            return
        with contextlib.suppress(Exception), self.engine.begin() as conn:
            self.predictions.create(conn, checkfirst=True)
        if not inspect(self.engine).has_table(self.predictions.name):
            with self.engine.begin() as conn:  # not a lost race: report the real error
                self.predictions.create(conn, checkfirst=True)
        self.predictions_exists = True

    def _scored(self) -> Any:
        """Correlated condition: this source row already has a prediction for this model version."""
        p = self.predictions.c
        condition = and_(p.review_id == self.id, p.model_name == self.model_name, p.model_version == self.model_version)
        if self.retry_errors:
            condition = and_(condition, p.status == STATUS_OK)
        return condition

    def analyze(self) -> None:
        """Refresh PostgreSQL's statistics of the predictions table.

        The NOT EXISTS read is only cheap when the planner knows the table's size: with the statistics
        of an empty table it picks a nested loop over a sequential scan, and each chunk then costs as
        much as the whole table (quadratic run time). Analyzed at the start and each time the table
        has doubled; a sampled ANALYZE takes milliseconds. No-op elsewhere.
        """
        if self.dialect != "postgresql" or not self.predictions_exists:
            return
        with contextlib.suppress(Exception), self.engine.begin() as conn:  # not the owner: a warning, no error
            conn.execute(text(f"ANALYZE {self.engine.dialect.identifier_preparer.format_table(self.predictions)}"))
        self._unanalyzed = 0

    def plan(self) -> Plan:
        """Count this shard's rows and those still missing a prediction (one query)."""
        self.analyze()
        with self.engine.connect() as conn:
            total_query = select(func.count()).select_from(self.source)
            if self.shard_condition is not None:
                total_query = total_query.where(self.shard_condition)
            total = conn.execute(total_query).scalar_one()
            if not self.predictions_exists:
                return Plan(total, total)
            pending = conn.execute(total_query.where(~exists().where(self._scored()))).scalar_one()
        self._analyzed_at = total - pending
        return Plan(total, pending)

    def chunks(self, size: int) -> Iterator[tuple[list[Any], list[Any]]]:
        """Yield (ids, texts) of rows missing a prediction, ``size`` at a time, in id order (keyset)."""
        query = select(self.id, self.text).order_by(self.id).limit(size)
        if self.shard_condition is not None:
            query = query.where(self.shard_condition)
        if self.predictions_exists:
            query = query.where(~exists().where(self._scored()))
        last = None
        with self.engine.connect() as conn:
            while True:
                page = query if last is None else query.where(self.id > last)
                rows = conn.execute(page).all()
                conn.rollback()  # end the read transaction: hold no snapshot or lock between chunks
                if not rows:
                    return
                last = rows[-1][0]
                yield [r[0] for r in rows], [r[1] for r in rows]

    def _upsert(self) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        statement = insert(self.predictions)
        updates = {c: statement.excluded[c] for c in PREDICTION_COLUMNS if c not in KEY_COLUMNS}
        return statement.on_conflict_do_update(index_elements=list(KEY_COLUMNS), set_=updates)

    def write(self, ids: Sequence[Any], results: Sequence[RowResult]) -> None:
        """Upsert one chunk's predictions and commit."""
        now = datetime.now(UTC)
        rows = [
            {
                "review_id": key,
                "model_name": self.model_name,
                "model_version": self.model_version,
                "label": r.label,
                "probability": r.probability,
                "positive_probability": r.positive_probability,
                "status": r.status,
                "error": r.error,
                "scored_at": now,
            }
            for key, r in zip(ids, results, strict=True)
        ]
        with self.engine.begin() as conn:
            conn.execute(self._upsert(), rows)
        self._unanalyzed += len(rows)
        if self._unanalyzed >= max(self._analyzed_at, 5 * len(rows)):
            self._analyzed_at += self._unanalyzed
            self.analyze()

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

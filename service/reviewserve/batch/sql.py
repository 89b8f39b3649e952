"""SQL source and sink (SQLAlchemy Core): keyset-paged reads of what is missing, an upsert per chunk.

Every identifier goes through SQLAlchemy ``Table``/``Column`` objects (the source table is reflected),
so names given on the command line are quoted by the dialect, never pasted into SQL.

- Reads: ``WHERE id > :last AND <shard> AND NOT EXISTS (a prediction for this id, model, version,
  with review_id > :last) ORDER BY id LIMIT :chunk`` -- no OFFSET, no full-table load, and a rerun
  reads only missing rows. The redundant ``review_id > :last`` inside NOT EXISTS lets PostgreSQL start
  its scan of the predictions index at :last instead of at its first entry (without it, each chunk
  scanned every prediction written so far: 160 ms per chunk at 800,000 rows).
- Writes: ``INSERT ... ON CONFLICT (review_id, model_name, model_version) DO UPDATE`` (PostgreSQL,
  SQLite), committed per chunk: a kill at any moment loses at most the chunk in flight, and the
  primary key makes a second write of the same row impossible. On PostgreSQL the chunk is first
  ``COPY``-ed into a session-private temporary table, then moved with one ``INSERT ... SELECT ... ON
  CONFLICT``; on SQLite it is one ``executemany`` of prepared tuples (both a fraction of the client CPU
  of SQLAlchemy's per-row parameter handling).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
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
    bindparam,
    create_engine,
    event,
    exists,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, NoSuchTableError, OperationalError

from reviewserve.batch.results import STATUS_OK, RowResult
from reviewserve.batch.retry import first_line
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
STAGE_TABLE = "reviewserve_predictions_stage"  # PostgreSQL: a temporary table, private to its session
log = logging.getLogger("reviewserve.batch")
SOURCES_TABLE = "reviewserve_batch_sources"  # which source table each predictions table holds results of
SQLITE_BUSY_TIMEOUT = 5.0  # seconds a statement waits for SQLite's write lock before `database is locked`


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


def is_transient(exc: BaseException) -> bool:
    """True for an error that a retry can cure: a lost or refused connection, a database shutting down or
    starting up (psycopg ``OperationalError``/``InterfaceError``, or a connection SQLAlchemy invalidated),
    SQLite's ``database is locked``/``busy``. False for errors in the data or the SQL (a retry repeats them).
    """
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    cause = getattr(exc, "orig", exc)
    if isinstance(cause, sqlite3.Error):  # also "no such table", "disk I/O error": not transient
        message = str(cause).lower()
        return isinstance(cause, sqlite3.OperationalError) and ("locked" in message or "busy" in message)
    if type(cause).__module__.startswith("psycopg"):
        import psycopg

        return isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError)
    return isinstance(exc, OperationalError | InterfaceError)


def make_engine(url: str, *, must_exist: bool = False, busy_timeout: float = 60.0) -> Engine:
    """An engine for PostgreSQL (psycopg 3) or SQLite (WAL, ``busy_timeout`` seconds, the shard hash function).

    ``must_exist``: refuse a SQLite file that does not exist (connecting would create an empty one).
    SQLite's busy timeout is per statement; the batch job uses 5 s and ``--retry-for`` retries past it.
    """
    parsed = database_url(url)
    dialect = parsed.get_backend_name()
    if dialect not in SUPPORTED_DIALECTS:
        raise SourceError(f"database {dialect!r} is not supported; use PostgreSQL or SQLite")
    if dialect == "sqlite":
        path = parsed.database or ""
        in_memory = path in ("", ":memory:") or path.startswith("file:") or parsed.query.get("mode") == "memory"
        if must_exist and not in_memory and not Path(path).is_file():
            raise SourceError(
                f"no SQLite database at {str(Path(path).resolve())!r} (sqlite:///relative/path, sqlite:////absolute/path)"
            )
        engine = create_engine(parsed, connect_args={"timeout": busy_timeout})
        event.listen(engine, "connect", _sqlite_connect)
        return engine
    engine = create_engine(parsed, pool_pre_ping=True)
    event.listen(engine, "connect", _postgres_connect)
    return engine


def _postgres_connect(dbapi_connection: Any, _record: Any) -> None:
    # No parallel query: a keyset page is a few thousand index entries, but with a shard filter the
    # planner cannot estimate (it guesses 0.5% of rows match) it launched a parallel worker process for
    # every page: 8-14 ms and two processes busy instead of 0.4-2 ms in one, on CPUs the model needs.
    dbapi_connection.execute("SET max_parallel_workers_per_gather = 0")
    dbapi_connection.commit()


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


def sources_table(metadata: MetaData) -> Table:
    """Which source table the results in each predictions table belong to (its key has no source)."""
    return Table(
        SOURCES_TABLE,
        metadata,
        Column("predictions_table", String(200), primary_key=True),
        Column("source_table", String(200), nullable=False),
        Column("registered_at", DateTime(timezone=True), nullable=False),
    )


def unique_key_columns(engine: Engine, table: str, schema: str | None = None) -> list[list[str]]:
    """The column lists of the table's primary key, unique constraints and unique indexes (reflected).

    A partial unique index (``... WHERE``) is left out: rows outside its condition may share an id.
    """
    inspector = inspect(engine)
    keys = [inspector.get_pk_constraint(table, schema=schema).get("constrained_columns") or []]
    keys += [c["column_names"] for c in inspector.get_unique_constraints(table, schema=schema)]
    keys += [
        i["column_names"]
        for i in inspector.get_indexes(table, schema=schema)
        if i.get("unique") and not _partial(i)
    ]
    return [list(k) for k in keys if k]


def _partial(index: dict[str, Any]) -> bool:
    """Whether a reflected index has a WHERE condition (``postgresql_where``, ``sqlite_where``)."""
    options = index.get("dialect_options") or {}
    return any(key.endswith("_where") and value is not None for key, value in options.items())


@dataclass(frozen=True)
class Plan:
    """Rows of this shard in the source, and how many of them still need a prediction.

    Rows whose id is NULL cannot be keyed: they are counted (``null_ids``), never read nor scored,
    and not in ``total``.
    """

    total: int
    pending: int
    null_ids: int = 0

    @property
    def extra(self) -> dict[str, Any]:
        """Summary fields of a SQL run beyond the common ones."""
        return {"null_ids": self.null_ids}

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
        self.engine = make_engine(url, must_exist=True, busy_timeout=SQLITE_BUSY_TIMEOUT)
        self.dialect = self.engine.dialect.name
        self.model_name, self.model_version = model_name, model_version
        self.metadata = MetaData()
        try:
            self.source = Table(table, self.metadata, autoload_with=self.engine)
        except NoSuchTableError:
            raise SourceError(f"table {table!r} does not exist in {self.engine.url.render_as_string()}") from None
        except Exception as exc:  # unreachable server, bad credentials, ...
            if is_transient(exc):
                self.engine.dispose()
                raise  # --retry-for retries it
            raise SourceError(f"cannot read table {table!r}: {first_line(exc)}") from exc
        columns = list(self.source.columns.keys())
        for option, name in (("--id-column", id_column), ("--text-column", text_column)):
            if name not in self.source.columns:
                raise SourceError(f"{option} {name!r} is not a column of table {table!r}; it has {columns}")
        self.id = self.source.columns[id_column]
        self.text = self.source.columns[text_column]
        if [id_column] not in unique_key_columns(self.engine, table):
            raise SourceError(
                f"--id-column {id_column!r} is not a unique key of table {table!r} (no PRIMARY KEY, UNIQUE "
                f"constraint or unique index on it alone, without a WHERE): rows sharing an id would share one result. "
                f"Add one (CREATE UNIQUE INDEX ... ON {table} ({id_column})) or name a unique column."
            )
        self.source_name = table
        # Its own MetaData: a --predictions-table named like the source must fail the check below, not clash here.
        self.predictions = predictions_table(MetaData(), predictions, self.id.type)
        self.predictions_exists = inspect(self.engine).has_table(predictions)
        if self.predictions_exists:
            self._check_predictions_columns(predictions)
        self.shard = shard
        self.shard_condition = shard_filter(self.id, shard or Shard(), self.dialect)
        self.id_not_null = self.id.is_not(None)
        self.retry_errors = retry_errors
        self._unanalyzed = 0  # rows written since the planner's statistics were last refreshed
        self._analyzed_at = 0
        self._statements: dict[str, Any] | None = None

    def _check_predictions_columns(self, name: str) -> None:
        found = {c["name"] for c in inspect(self.engine).get_columns(name)}
        missing = [c for c in PREDICTION_COLUMNS if c not in found]
        if missing:
            raise SourceError(f"table {name!r} exists but is not a predictions table: it lacks {missing}")

    def create_predictions_table(self) -> None:
        """Create the predictions table if it is missing (safe when several shards race to do it), and
        record the source table it holds results of (refused when it holds another table's)."""
        if not self.predictions_exists:
            with contextlib.suppress(Exception), self.engine.begin() as conn:
                self.predictions.create(conn, checkfirst=True)
            if not inspect(self.engine).has_table(self.predictions.name):
                with self.engine.begin() as conn:  # not a lost race: report the real error
                    self.predictions.create(conn, checkfirst=True)
            self.predictions_exists = True
        self.register_source()

    def register_source(self, *, check_only: bool = False) -> None:
        """Record that the predictions table holds results of this source table; refuse another one.

        The predictions key is (review_id, model_name, model_version): results of two source tables in
        one predictions table would be taken for each other's (row 1 of one "has" row 1 of the other's
        result). ``check_only`` (dry run): compare with the record, write nothing.
        """
        sources = sources_table(MetaData())
        if not inspect(self.engine).has_table(SOURCES_TABLE):
            if check_only:
                return
            with contextlib.suppress(Exception), self.engine.begin() as conn:
                sources.create(conn, checkfirst=True)
        record = {"predictions_table": self.predictions.name, "source_table": self.source_name,
                  "registered_at": datetime.now(UTC)}  # fmt: skip
        with self.engine.begin() as conn:
            if not check_only:
                if self.dialect == "postgresql":
                    from sqlalchemy.dialects.postgresql import insert
                else:
                    from sqlalchemy.dialects.sqlite import insert
                conn.execute(insert(sources).values(record).on_conflict_do_nothing())
            owner = conn.execute(
                select(sources.c.source_table).where(sources.c.predictions_table == self.predictions.name)
            ).scalar_one_or_none()
        if owner is not None and owner != self.source_name:
            raise SourceError(
                f"predictions table {self.predictions.name!r} holds the results of table {owner!r}, not "
                f"{self.source_name!r}; give this table its own: --predictions-table {self.source_name}_predictions"
            )

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
            total_query = select(func.count()).select_from(self.source).where(self.id_not_null)
            if self.shard_condition is not None:
                total_query = total_query.where(self.shard_condition)
            total = conn.execute(total_query).scalar_one()
            nulls = 0
            if self.shard is None or self.shard.index == 0:  # NULL has no shard: shard 0 reports them
                null_query = select(func.count()).select_from(self.source).where(self.id.is_(None))
                nulls = conn.execute(null_query).scalar_one()
            if nulls:
                log.warning(
                    "rows with a NULL id skipped",
                    extra={"table": self.source_name, "id_column": self.id.name, "null_ids": nulls},
                )
            if not self.predictions_exists:
                return Plan(total, total, nulls)
            pending = conn.execute(total_query.where(~exists().where(self._scored()))).scalar_one()
        self._analyzed_at = total - pending
        return Plan(total, pending, nulls)

    def page_queries(self, size: int) -> tuple[Any, Any]:
        """The first keyset page's query, and the next pages' (bound parameter ``last``: the last id read)."""
        query = select(self.id, self.text).where(self.id_not_null).order_by(self.id).limit(size)
        if self.shard_condition is not None:
            query = query.where(self.shard_condition)
        last = bindparam("last", type_=self.id.type)
        first, later = query, query.where(self.id > last)
        if self.predictions_exists:
            scored = self._scored()
            first = first.where(~exists().where(scored))
            # review_id > :last is implied by review_id = id; stated, it bounds the predictions index scan.
            bounded = and_(scored, self.predictions.c.review_id > last)
            later = later.where(~exists().where(bounded))
        return first, later

    def chunks(self, size: int) -> Iterator[tuple[list[Any], list[Any]]]:
        """Yield (ids, texts) of rows missing a prediction, ``size`` at a time, in id order (keyset)."""
        first, later = self.page_queries(size)
        last = None
        with self.engine.connect() as conn:
            while True:
                rows = conn.execute(first).all() if last is None else conn.execute(later, {"last": last}).all()
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

    def _writer(self) -> Any:
        """The write statements, built once: the SQLite upsert's SQL; PostgreSQL's stage, COPY and merge."""
        if self._statements is not None:
            return self._statements
        dialect = self.engine.dialect
        if self.dialect == "sqlite":  # executemany takes the values as SQLAlchemy would send them
            processors = {c: self.predictions.c[c].type.bind_processor(dialect) for c in PREDICTION_COLUMNS}
            compiled = self._upsert().compile(dialect=dialect)
            assert tuple(compiled.positiontup or ()) == PREDICTION_COLUMNS, compiled.positiontup
            self._statements = {"upsert": str(compiled), "processors": processors}
            return self._statements
        quote = dialect.identifier_preparer.quote
        stage_name = f"pg_temp.{quote(STAGE_TABLE)}"  # the session's own schema: never a user's table
        columns = ", ".join(quote(c) for c in PREDICTION_COLUMNS)
        stage = Table(STAGE_TABLE, MetaData(), *(Column(c) for c in PREDICTION_COLUMNS), schema="pg_temp")
        merge = self._upsert().from_select(list(PREDICTION_COLUMNS), select(*stage.c))
        self._statements = {
            "stage": f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage_name} "
            f"(LIKE {dialect.identifier_preparer.format_table(self.predictions)} INCLUDING DEFAULTS) "
            "ON COMMIT DELETE ROWS",
            "copy": f"COPY {stage_name} ({columns}) FROM STDIN",
            "merge": merge,
            "processors": {},  # psycopg adapts the Python values (COPY's text format)
        }
        return self._statements

    def write(self, ids: Sequence[Any], results: Sequence[RowResult]) -> None:
        """Upsert one chunk's predictions and commit."""
        statements = self._writer()
        rows = self._rows(statements["processors"], ids, results)
        created: dict[str, Any] | None = None
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                created = self._copy_merge(conn, statements, rows)
            else:
                conn.exec_driver_sql(statements["upsert"], rows)
        if created is not None:  # committed: the stage table exists for the rest of this session
            created[STAGE_TABLE] = True
        self._unanalyzed += len(rows)
        if self._unanalyzed >= max(self._analyzed_at, 5 * len(rows)):
            self._analyzed_at += self._unanalyzed
            self.analyze()

    def _rows(self, processors: dict[str, Any], ids: Sequence[Any], results: Sequence[RowResult]) -> list[tuple]:
        """One tuple per row in ``PREDICTION_COLUMNS`` order, through the columns' bind processors (if any)."""
        now = datetime.now(UTC)
        constant = {"model_name": self.model_name, "model_version": self.model_version, "scored_at": now}
        for column, value in constant.items():
            if processors.get(column) is not None:
                constant[column] = processors[column](value)
        name, version, now = constant["model_name"], constant["model_version"], constant["scored_at"]
        rows = [
            (key, name, version, r.label, r.probability, r.positive_probability, r.status, r.error, now)
            for key, r in zip(ids, results, strict=True)
        ]
        per_row = [(i, processors.get(c)) for i, c in enumerate(PREDICTION_COLUMNS) if c not in constant]
        per_row = [(i, process) for i, process in per_row if process is not None]
        if per_row:  # e.g. SQLite stores a UUID key as text
            rows = [_apply(row, per_row) for row in rows]
        return rows

    def _copy_merge(self, conn: Any, statements: dict[str, Any], rows: list[tuple[Any, ...]]) -> dict[str, Any] | None:
        """PostgreSQL: COPY the rows into this session's stage table, then one INSERT ... SELECT ... ON CONFLICT.

        The stage is emptied at each commit (ON COMMIT DELETE ROWS) and is private to the connection, so
        shards and concurrent jobs never see each other's rows. Committed by the caller's transaction;
        returns the connection's ``info`` when this transaction created the stage (the caller marks it
        there once committed: a rollback undoes the CREATE too).
        """
        pooled = conn.connection  # its info lives as long as the database session
        created = None
        if not pooled.info.get(STAGE_TABLE):
            conn.exec_driver_sql(statements["stage"])
            created = pooled.info
        cursor = pooled.driver_connection.cursor()
        try:
            with cursor.copy(statements["copy"]) as copy:
                for row in rows:
                    copy.write_row(row)
        except self.engine.dialect.loaded_dbapi.Error as exc:  # the SQLAlchemy error types, as for execute()
            raise DBAPIError.instance(statements["copy"], None, exc, self.engine.dialect.loaded_dbapi.Error) from exc
        finally:
            cursor.close()
        conn.execute(statements["merge"])
        return created

    def transient(self, exc: BaseException) -> bool:
        """An error ``--retry-for`` retries (:func:`is_transient`)."""
        return is_transient(exc)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()


def _apply(row: tuple[Any, ...], processors: list[tuple[int, Any]]) -> tuple[Any, ...]:
    values = list(row)
    for index, process in processors:
        if values[index] is not None:
            values[index] = process(values[index])
    return tuple(values)

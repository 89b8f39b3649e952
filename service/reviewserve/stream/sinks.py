"""Where a consumer's results go: the results stream, or a SQL table (the archiver group).

Both acknowledge a message only once its result is written:

- ``stream``: result XADD and XACK in one atomic Redis script, so a result exists iff the message
  was acknowledged: exactly one result per message.
- ``sql``: upsert the batch (one transaction, ``ON CONFLICT (stream, consumer_group, source_id,
  model_name, model_version) DO NOTHING``),
  commit, then acknowledge. A crash between commit and acknowledgement redelivers the messages
  and the upsert ignores them: at-least-once delivery, effectively once in the table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from reviewserve.stream.broker import Broker, Completed, DeadLetter, Result

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Route:
    """The streams and group a consumer works on."""

    stream: str
    group: str
    results: str
    dead_letter: str


class Sink(Protocol):
    """Writes a batch's results and dead letters and acknowledges the batch."""

    name: str

    def write(self, broker: Broker, route: Route, results: Sequence[Result], dead: Sequence[DeadLetter]) -> Completed:
        """Write, then acknowledge (atomically or idempotently); return what was acknowledged."""
        ...

    def ready(self) -> str | None:
        """None when the sink can take writes, else the reason it cannot."""
        ...

    def close(self) -> None:
        """Release resources."""
        ...


class StreamSink:
    """Results to the results stream, atomically with the acknowledgement."""

    name = "stream"

    def write(self, broker: Broker, route: Route, results: Sequence[Result], dead: Sequence[DeadLetter]) -> Completed:
        """One atomic broker call: XACK + result/dead-letter XADD per message."""
        return broker.complete(route.stream, route.group, route.results, route.dead_letter, results, dead)

    def ready(self) -> str | None:
        """The results stream lives in the broker: ready when the broker is."""
        return None

    def close(self) -> None:
        """Nothing to release."""


KEY_COLUMNS = ("stream", "consumer_group", "source_id", "model_name", "model_version")


class SqlSink:
    """Results upserted into a SQL table (SQLite or PostgreSQL via psycopg 3), idempotent on its key.

    The key is what makes a result distinct: (stream, consumer_group, source_id, model_name,
    model_version), so a second archiver group, or one running another model version, writing the
    same table keeps its own rows instead of having them dropped by ``DO NOTHING``. The engine is
    the batch job's (:func:`reviewserve.batch.sql.make_engine`): same driver, same URL rules.
    """

    name = "sql"

    def __init__(self, database_url: str, table: str = "stream_predictions", model_name: str = "") -> None:
        """Connect and create the table if it does not exist; refuse a table with another key."""
        from sqlalchemy import Column, DateTime, Float, MetaData, PrimaryKeyConstraint, String, Table, func

        from reviewserve.batch.sql import database_url as parse_url
        from reviewserve.batch.sql import make_engine

        url = parse_url(database_url)
        if url.drivername == "postgresql+pg8000":  # URLs written for the former driver keep working
            url = url.set(drivername="postgresql+psycopg")
        dialect = url.get_backend_name()
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"--database-url: dialect {dialect!r} is not supported (use sqlite or postgresql)")
        self.model_name = model_name
        self.dialect = dialect
        self.engine = make_engine(url.render_as_string(hide_password=False))
        self._prepared = False
        self.table = Table(
            table,
            MetaData(),
            Column("stream", String(255), nullable=False),
            Column("consumer_group", String(255), nullable=False),
            Column("source_id", String(64), nullable=False),
            Column("model_name", String(200), nullable=False),
            Column("model_version", String(100), nullable=False),
            Column("label", String(32), nullable=False),
            Column("probability", Float, nullable=False),
            Column("positive_probability", Float, nullable=False),
            Column("archived_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
            PrimaryKeyConstraint(*KEY_COLUMNS),
        )
        try:
            self._prepare()
        except sql_transient_errors() as exc:  # down at start: created at the first write, retried
            log.warning("database unreachable at start (%s); the table is checked at the first write", exc)

    def _prepare(self) -> None:
        """Create the table unless it exists, check its key, build the upsert (once)."""
        from sqlalchemy import inspect
        from sqlalchemy.exc import SQLAlchemyError

        if self._prepared:
            return
        table = self.table.name
        try:
            self.table.create(self.engine, checkfirst=True)
        except SQLAlchemyError:
            # Another archiver created it at the same moment; anything else fails the check below.
            if not inspect(self.engine).has_table(table):
                raise
        key = inspect(self.engine).get_pk_constraint(table).get("constrained_columns") or []
        if tuple(key) != KEY_COLUMNS:
            raise ValueError(
                f"table {table!r} has primary key ({', '.join(key)}), not ({', '.join(KEY_COLUMNS)}): made by an "
                "older reviewserve? Rename it (the archiver creates a new one) or choose another --table"
            )
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        self._insert = insert(self.table).on_conflict_do_nothing(index_elements=list(KEY_COLUMNS))
        self._prepared = True

    def rows(self, route: Route, results: Sequence[Result]) -> list[dict[str, object]]:
        """The table rows of a batch's results."""
        return [
            {
                "stream": route.stream,
                "consumer_group": route.group,
                "source_id": r.source_id,
                "model_name": self.model_name,
                "model_version": r.model_version,
                "label": r.label,
                "probability": r.probability,
                "positive_probability": r.positive_probability,
            }
            for r in results
        ]

    def write(self, broker: Broker, route: Route, results: Sequence[Result], dead: Sequence[DeadLetter]) -> Completed:
        """Upsert and commit, then acknowledge (results are not written to the results stream)."""
        self._prepare()
        if results:
            with self.engine.begin() as conn:
                conn.execute(self._insert, self.rows(route, results))
        return broker.complete(route.stream, route.group, None, route.dead_letter, results, dead)

    def ready(self) -> str | None:
        """None when the database answers ``SELECT 1``."""
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            return f"database unreachable: {type(exc).__name__}"
        return None

    def close(self) -> None:
        """Dispose of the connection pool."""
        self.engine.dispose()


def sql_transient_errors() -> tuple[type[BaseException], ...]:
    """What an archiver waits out: a lost or refused database connection, a locked SQLite file.

    SQLAlchemy wraps the driver's errors (psycopg's ``OperationalError``/``InterfaceError``,
    sqlite3's ``OperationalError``) in its own classes of the same names; the raw driver classes
    are listed too for errors raised outside SQLAlchemy (e.g. while a connection is returned).
    """
    import psycopg
    from sqlalchemy import exc

    return (exc.OperationalError, exc.InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)

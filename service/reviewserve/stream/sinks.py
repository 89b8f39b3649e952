"""Where a consumer's results go: the results stream, or a SQL table (the archiver group).

Both acknowledge a message only once its result is written:

- ``stream``: result XADD and XACK in one atomic Redis script, so a result exists iff the message
  was acknowledged: exactly one result per message.
- ``sql``: upsert the batch (one transaction, ``ON CONFLICT (stream, source_id) DO NOTHING``),
  commit, then acknowledge. A crash between commit and acknowledgement redelivers the messages
  and the upsert ignores them: at-least-once delivery, effectively once in the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from reviewserve.stream.broker import Broker, Completed, DeadLetter, Result


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


class SqlSink:
    """Results upserted into a SQL table (SQLite or PostgreSQL), idempotent on (stream, source_id)."""

    name = "sql"

    def __init__(self, database_url: str, table: str = "stream_predictions") -> None:
        """Connect and create the table if it does not exist."""
        from sqlalchemy import Column, DateTime, Float, MetaData, String, Table, create_engine, func
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import SQLAlchemyError

        dialect = make_url(database_url).get_backend_name()
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"--database-url: dialect {dialect!r} is not supported (use sqlite or postgresql)")
        # SQLite: several archiver processes may share one file; wait for its lock instead of failing.
        connect_args = {"timeout": 30} if dialect == "sqlite" else {}
        self.engine = create_engine(database_url, pool_pre_ping=True, connect_args=connect_args)
        self.table = Table(
            table,
            MetaData(),
            Column("stream", String(255), primary_key=True),
            Column("source_id", String(64), primary_key=True),
            Column("label", String(32), nullable=False),
            Column("probability", Float, nullable=False),
            Column("positive_probability", Float, nullable=False),
            Column("model_version", String(64), nullable=False),
            Column("archived_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
        )
        try:
            self.table.create(self.engine, checkfirst=True)
        except SQLAlchemyError:
            # Another archiver created it at the same moment; anything else fails the check below.
            from sqlalchemy import inspect

            if not inspect(self.engine).has_table(table):
                raise
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        self._insert = insert(self.table).on_conflict_do_nothing(index_elements=["stream", "source_id"])

    def write(self, broker: Broker, route: Route, results: Sequence[Result], dead: Sequence[DeadLetter]) -> Completed:
        """Upsert and commit, then acknowledge (results are not written to the results stream)."""
        if results:
            rows = [
                {
                    "stream": route.stream,
                    "source_id": r.source_id,
                    "label": r.label,
                    "probability": r.probability,
                    "positive_probability": r.positive_probability,
                    "model_version": r.model_version,
                }
                for r in results
            ]
            with self.engine.begin() as conn:
                conn.execute(self._insert, rows)
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

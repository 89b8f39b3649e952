"""Fixtures of the batch tests: real PostgreSQL 15 and SQLite databases, moto S3, a Pushgateway, and a
helper that runs ``reviewserve score`` as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, create_engine, func, select, text

from reviewserve.batch.sql import database_url
from tests.batch import servers
from tests.conftest import MODEL_DIR, ROOT

REVIEWS = [
    "This phone is great, the battery lasts all day",
    "Terrible service, never again",
    "It works as described",
    "The worst purchase I have made this year",
    "I love the screen and the sound",
    "Broke after a week. Very disappointed.",
    "Not bad at all for the price",
    "Food was cold and the waiter was rude",
]


def review_texts(count: int) -> list[str]:
    """``count`` distinct review texts."""
    return [f"{REVIEWS[i % len(REVIEWS)]} (review {i})" for i in range(count)]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[servers.Postgres]:
    """One PostgreSQL 15 cluster for the session (each test gets its own database)."""
    with servers.postgres() as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: SQLite file or PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'reviews.db'}"
    pg = request.getfixturevalue("pg_server")
    return pg.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file."""
    return f"sqlite:///{tmp_path / 'reviews.db'}"


def engine_for(url: str) -> Any:
    """A SQLAlchemy engine for a test database (psycopg 3 for PostgreSQL)."""
    return create_engine(database_url(url))


def execute_sql(url: str, *statements: str) -> None:
    """Run test-authored DDL/DML statements in one transaction."""
    engine = engine_for(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    engine.dispose()


def make_reviews(
    url: str,
    rows: Sequence[tuple[Any, Any]],
    *,
    table: str = "reviews",
    id_column: str = "id",
    text_column: str = "text",
    id_type: Any = None,
) -> None:
    """Create ``table`` (id_type primary key, text) and insert ``rows`` of (id, text)."""
    engine = engine_for(url)
    metadata = MetaData()
    reviews = Table(
        table,
        metadata,
        Column(id_column, id_type if id_type is not None else Integer, primary_key=True, autoincrement=False),
        Column(text_column, Text),
    )
    metadata.create_all(engine)
    with engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(reviews.insert(), [{id_column: k, text_column: t} for k, t in rows[start : start + 5000]])
    engine.dispose()


def prediction_counts(url: str, table: str = "predictions") -> dict[str, int]:
    """Rows, distinct keys and duplicates of a predictions table."""
    engine = engine_for(url)
    predictions = Table(table, MetaData(), autoload_with=engine)
    c = predictions.c
    with engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(predictions)).scalar_one()
        dup_query = (
            select(c.review_id, c.model_name, c.model_version)
            .group_by(c.review_id, c.model_name, c.model_version)
            .having(func.count() > 1)
        )
        duplicates = len(conn.execute(dup_query).all())
        ids = conn.execute(select(func.count(func.distinct(c.review_id)))).scalar_one()
    engine.dispose()
    return {"rows": rows, "ids": ids, "duplicates": duplicates}


def query(url: str, sql: str, **params: Any) -> list[Any]:
    """Run a test-authored SQL query and return all rows."""
    engine = engine_for(url)
    with engine.connect() as conn:
        result = conn.execute(text(sql), params).all()
    engine.dispose()
    return result


@dataclass
class Run:
    """A finished ``reviewserve score`` process."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict[str, Any]:
        """The summary JSON (the last stdout line)."""
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        assert lines, f"no output; stderr:\n{self.stderr}"
        return json.loads(lines[-1])

    def logs(self) -> list[dict[str, Any]]:
        """JSON log lines before the summary."""
        return [json.loads(line) for line in self.stdout.splitlines()[:-1] if line.startswith("{")]


def score_env(**extra: str) -> dict[str, str]:
    """Environment of a scoring subprocess: the committed model, unbuffered output."""
    return {**os.environ, "MODEL_PATH": str(MODEL_DIR), "PYTHONUNBUFFERED": "1", **extra}


def score_command(*args: str) -> list[str]:
    """``reviewserve score ARGS`` as a subprocess command line."""
    return [sys.executable, "-m", "reviewserve.cli", "score", "--no-progress", *args]


def run_score(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Run:
    """Run ``reviewserve score`` to completion."""
    proc = subprocess.run(
        score_command(*args), cwd=ROOT, env=env or score_env(), capture_output=True, text=True, timeout=timeout
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def score_in_process(*args: str, **env: str) -> Run:
    """``reviewserve score ARGS`` through click's test runner (same code, no interpreter start-up)."""
    from click.testing import CliRunner

    from reviewserve.cli import main

    result = CliRunner(env={"MODEL_PATH": str(MODEL_DIR), **env}).invoke(main, ["score", "--no-progress", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Run(result.exit_code, result.stdout, result.stderr)


def kill_after(args: Sequence[str], message: str, count: int, env: dict[str, str] | None = None) -> int:
    """Start ``reviewserve score``, SIGKILL it right after its ``count``-th log line ``message``; return its code."""
    process = subprocess.Popen(
        score_command(*args), cwd=ROOT, env=env or score_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    seen = 0
    for line in process.stdout:
        if line.startswith("{") and json.loads(line).get("message") == message:
            seen += 1
            if seen >= count:
                process.kill()
                break
    process.wait(timeout=60)
    process.stdout.close()
    assert process.stderr is not None
    err = process.stderr.read()
    process.stderr.close()
    assert seen >= count, f"the job ended before {count} x {message!r}: rc {process.returncode}\n{err}"
    return process.returncode

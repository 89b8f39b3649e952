"""Fan-out: a second consumer group archives the same stream into SQL, idempotent on the message id."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from reviewserve.stream.broker import Completed, DeadLetter, Result
from reviewserve.stream.redis_broker import RedisBroker
from reviewserve.stream.sinks import Route, SqlSink
from tests.stream.conftest import Keys, Procs, RedisServer, reviews, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _rows(url: str) -> dict[str, tuple[str, float, float, str]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT source_id, label, probability, positive_probability, model_version FROM stream_predictions")
        ).all()
    engine.dispose()
    return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty archive database: a SQLite file, or a fresh database on the test PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'archive.db'}"
    server: str = request.getfixturevalue("postgres_url")
    name = f"archive_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server.rsplit("/", 1)[0] + f"/{name}"


def test_archiver_group_has_the_same_results_in_sql(procs: Procs, r: redis.Redis, keys: Keys, database: str) -> None:
    """Groups `scorers` (results stream) and `archiver` (SQLite / PostgreSQL) get every message: same results."""
    scorer = procs.consumer("s1", "scorers", wait=False)
    archivers = [
        procs.consumer(f"a{i}", "archiver", "--sink", "sql", "--database-url", database, wait=False) for i in range(2)
    ]
    for proc in (scorer, *archivers):
        proc.wait_ready()
    r.xadd(keys.stream, {"review": " "})  # a poison message: dead-lettered by each group
    producer = procs.producer("p", reviews(300))
    assert producer.process.wait(timeout=60) == 0, producer.log()

    def drained() -> bool:
        return all(g["pending"] == 0 and g["lag"] == 0 for g in r.xinfo_groups(keys.stream))

    wait_until(drained, 120, "both groups to drain")
    streamed = {
        f["source_id"]: (f["label"], float(f["probability"]), float(f["positive_probability"]), f["model_version"])
        for _, f in r.xrange(keys.results)
    }
    assert len(streamed) == r.xlen(keys.results) == 300
    assert _rows(database) == streamed, "the archive holds exactly the results stream's results"
    dead = [(f["group"], f["reason"].split(":")[0]) for _, f in r.xrange(keys.dead)]
    assert sorted(dead) == [("archiver", "empty_review"), ("scorers", "empty_review")]
    for proc in (scorer, *archivers):
        assert proc.terminate() == 0, proc.log()


def test_sql_sink_is_idempotent_on_the_message_id(redis_server: RedisServer, keys: Keys, database: str) -> None:
    """Writing the same results again (a redelivery after a crash between commit and ack) adds no row."""
    url = database
    broker = RedisBroker(redis_server.url)
    broker.ensure_group(keys.stream, "archiver")
    client = redis_server.client()
    ids = [client.xadd(keys.stream, {"review": t}) for t in reviews(3)]
    broker.read(keys.stream, "archiver", "a", count=10, block_ms=100)
    sink = SqlSink(url)
    route = Route(keys.stream, "archiver", keys.results, keys.dead)
    first = [Result(i, "positive", 0.8, 0.8, "1") for i in ids]
    # The "crash": rows committed but the messages not acknowledged; redelivered and written again.
    with sink.engine.begin() as conn:
        conn.execute(sink._insert, sink.rows(route, first))
    again = [Result(i, "negative", 0.6, 0.4, "1") for i in ids]
    done = sink.write(broker, route, again, [DeadLetter("0-1", "x: not pending, ignored")])
    assert done == Completed(results=0, dead_letters=0, acked=3, duplicates=1)
    assert _rows(url) == {i: ("positive", 0.8, 0.8, "1") for i in ids}, "the first write stands"
    assert client.xlen(keys.results) == 0, "the SQL sink does not write the results stream"
    assert SqlSink(url).ready() is None  # an existing table is reused
    sink.close()


def test_sql_sink_refuses_other_databases() -> None:
    """Only SQLite and PostgreSQL have the upsert the archiver relies on."""
    with pytest.raises(ValueError, match="dialect 'mysql' is not supported"):
        SqlSink("mysql://u:p@127.0.0.1:1/db")

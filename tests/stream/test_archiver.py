"""Fan-out: a second consumer group archives the same stream into SQL, idempotent on the message id."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
import redis
import requests
import sqlalchemy as sa

from reviewserve.stream.broker import Completed, DeadLetter, Result
from reviewserve.stream.redis_broker import RedisBroker
from reviewserve.stream.sinks import Route, SqlSink
from tests.batch.servers import PG_BIN, Postgres, _as_postgres_user, postgres
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


def test_sql_key_keeps_each_group_and_model_version(redis_server: RedisServer, keys: Keys, database: str) -> None:
    """Issue 18 item 14: a second archiver group, or another model version, keeps its rows (not DO NOTHING'd)."""
    broker = RedisBroker(redis_server.url)
    client = redis_server.client()
    broker.ensure_group(keys.stream, "archiver")
    broker.ensure_group(keys.stream, "archiver-v2")
    ids = [client.xadd(keys.stream, {"review": t}) for t in reviews(3)]
    v1, v2 = SqlSink(database, model_name="review-sentiment"), SqlSink(database, model_name="review-sentiment")
    for group, sink, version, label in (("archiver", v1, "1", "positive"), ("archiver-v2", v2, "2", "negative")):
        broker.read(keys.stream, group, "a", count=10, block_ms=100)
        route = Route(keys.stream, group, keys.results, keys.dead)
        done = sink.write(broker, route, [Result(i, label, 0.7, 0.7, version) for i in ids], [])
        assert done.acked == 3
    engine = sa.create_engine(database)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT consumer_group, model_name, model_version, label, count(*) FROM stream_predictions "
                    "GROUP BY consumer_group, model_name, model_version, label ORDER BY consumer_group")
        ).all()  # fmt: skip
    engine.dispose()
    assert [tuple(row) for row in rows] == [
        ("archiver", "review-sentiment", "1", "positive", 3),
        ("archiver-v2", "review-sentiment", "2", "negative", 3),
    ]
    v1.close()
    v2.close()


def test_a_table_with_the_old_key_is_refused(database: str) -> None:
    """A table made by an older archiver (key stream, source_id) is refused with what to do, not half-used."""
    engine = sa.create_engine(database)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE old_archive (stream VARCHAR(255), source_id VARCHAR(64), label VARCHAR(32), "
                             "PRIMARY KEY (stream, source_id))"))  # fmt: skip
    engine.dispose()
    with pytest.raises(ValueError, match=r"table 'old_archive' has primary key \(stream, source_id\).*Rename it"):
        SqlSink(database, "old_archive")


def _pg_ctl(server: Postgres, *args: str) -> None:
    options = f"-p {server.port} -k {server.data.parent} -c listen_addresses=127.0.0.1 -c fsync=off"
    log = server.data.parent / "postgres.log"
    cmd = [str(PG_BIN / "pg_ctl"), "-D", str(server.data), "-o", options, "-l", str(log), "-w", *args]
    subprocess.run(_as_postgres_user(cmd), check=True, capture_output=True, timeout=120)


def _count(url: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            return conn.execute("SELECT count(*) FROM stream_predictions").fetchone()[0]  # type: ignore[index]
    except psycopg.Error:
        return -1


def test_archiver_rides_out_a_database_outage_and_restarts(procs: Procs, r: redis.Redis, keys: Keys) -> None:
    """Issue 18 item 13: PostgreSQL stopped under a running archiver, and an archiver restarted again and again
    while it is down (--max-deliveries 2): no crash, no valid message dead-lettered, one row per message."""
    with postgres() as server:
        url = server.create_database("archive")
        archiver_args = ("--sink", "sql", "--database-url", url, "--max-deliveries", "2")
        archiver = procs.consumer("a1", "archiver", *archiver_args)
        assert procs.producer("p1", reviews(50, tag="a-")).process.wait(timeout=60) == 0
        wait_until(lambda: _count(url) == 50, 60, "50 rows")
        _pg_ctl(server, "-m", "fast", "stop")
        assert procs.producer("p2", reviews(20, tag="b-")).process.wait(timeout=60) == 0
        wait_until(lambda: "cannot write the batch, retrying" in archiver.log(), 60, "the archiver to retry")
        ready = requests.get(archiver.url + "/readyz", timeout=5)
        assert ready.status_code == 503 and "OperationalError" in ready.json()["reason"]
        assert archiver.terminate() == 0, archiver.log()  # the batch stays pending for the next start
        for attempt in range(4):
            restarted = procs._spawn(
                f"restart-{attempt}",
                [
                    "consume",
                    "--group",
                    "archiver",
                    "--consumer",
                    "a1",
                    *keys.args(),
                    *archiver_args,
                    "--block-ms",
                    "200",
                ],
            )
            wait_until(lambda p=restarted: "cannot write the batch, retrying" in p.log(), 60, "a retry")  # type: ignore[misc]
            assert restarted.terminate() == 0, restarted.log()
        pending = r.xpending_range(keys.stream, "archiver", "-", "+", 100)
        assert len(pending) == 20 and max(p["times_delivered"] for p in pending) <= 2, pending
        _pg_ctl(server, "start")
        final = procs.consumer("a1", "archiver", *archiver_args)
        wait_until(lambda: _count(url) == 70, 60, "70 rows")
        wait_until(lambda: r.xpending(keys.stream, "archiver")["pending"] == 0, 30, "nothing pending")
        assert r.xlen(keys.dead) == 0, [f for _, f in r.xrange(keys.dead)]
        assert final.terminate() == 0
        for proc in procs.started:
            assert "Traceback" not in proc.log(), proc.log()

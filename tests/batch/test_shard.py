"""--shard parsing and the shard hash: the same key falls in the same shard in Python, SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Column, MetaData, String, Table, select

from reviewserve.batch.shard import Shard, key_hash, shard_filter
from tests.batch.conftest import make_reviews

KEYS = ["k-0", "k-1", "Ünïcode ✓", "", str(uuid.UUID(int=7)), "x" * 300]


@pytest.mark.parametrize(("text", "shard"), [("0/1", Shard(0, 1)), ("2/3", Shard(2, 3)), (" 1 / 2 ", Shard(1, 2))])
def test_parse(text: str, shard: Shard) -> None:
    assert Shard.parse(text) == shard


@pytest.mark.parametrize("text", ["", "1", "2/2", "-1/2", "0/0", "a/b", "1/2/3"])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="shard"):
        Shard.parse(text)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_database_computes_the_python_shard_of_every_key(backend: str, request: pytest.FixtureRequest) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{request.getfixturevalue('tmp_path') / 'shard.db'}"
    else:
        url = request.getfixturevalue("pg_server").create_database(f"s_{uuid.uuid4().hex[:10]}")
    make_reviews(url, [(k, "text") for k in KEYS], id_type=String(400))
    from reviewserve.batch.sql import make_engine

    engine = make_engine(url)  # registers the SQLite function
    table = Table("reviews", MetaData(), Column("id", String(400), primary_key=True))
    for count in (2, 3, 7):
        for index in range(count):
            condition = shard_filter(table.c.id, Shard(index, count), engine.dialect.name)
            with engine.connect() as conn:
                got = {row[0] for row in conn.execute(select(table.c.id).where(condition))}
            assert got == {k for k in KEYS if key_hash(k) % count == index}, (count, index)
    engine.dispose()

"""The Redis broker's guarantees, against a real redis-server: atomic ack+write, claims, trimming."""

from __future__ import annotations

import pytest
import redis

from reviewserve.stream.broker import DeadLetter, Result
from reviewserve.stream.redis_broker import RedisBroker
from tests.stream.conftest import Keys, RedisServer


def _result(message_id: str, label: str = "positive") -> Result:
    return Result(message_id, label, 0.9, 0.9 if label == "positive" else 0.1, "1")


def _add(r: redis.Redis, stream: str, count: int) -> list[str]:
    return [r.xadd(stream, {"review": f"review {i}"}) for i in range(count)]


def test_result_written_only_with_the_acknowledgement(redis_server: RedisServer, r: redis.Redis, keys: Keys) -> None:
    """complete() writes a result exactly for the messages it acknowledged: a repeat writes nothing."""
    broker = RedisBroker(redis_server.url)
    broker.ensure_group(keys.stream, "g")
    broker.ensure_group(keys.stream, "g")  # idempotent
    ids = _add(r, keys.stream, 3)
    got = broker.read(keys.stream, "g", "c1", count=10, block_ms=100)
    assert [m.id for m in got] == ids and all(m.deliveries == 1 for m in got)
    results = [_result(i) for i in ids[:2]]
    dead = [DeadLetter(ids[2], "empty_review: review is empty or only whitespace")]
    done = broker.complete(keys.stream, "g", keys.results, keys.dead, results, dead)
    assert (done.results, done.dead_letters, done.duplicates) == (2, 1, 0)
    again = broker.complete(keys.stream, "g", keys.results, keys.dead, results, dead)
    assert (again.results, again.dead_letters, again.duplicates) == (0, 0, 3)
    written = r.xrange(keys.results)
    assert [f for _, f in written] == [
        {"source_id": i, "label": "positive", "probability": "0.9", "positive_probability": "0.9", "model_version": "1"}
        for i in ids[:2]
    ]
    assert [f for _, f in r.xrange(keys.dead)] == [
        {"source_id": ids[2], "reason": "empty_review: review is empty or only whitespace", "group": "g"}
    ]
    assert r.xpending(keys.stream, "g")["pending"] == 0


def test_slow_consumer_and_claimer_write_one_result(redis_server: RedisServer, r: redis.Redis, keys: Keys) -> None:
    """A message claimed from a slow (not dead) consumer and scored by both still gets one result."""
    broker = RedisBroker(redis_server.url)
    broker.ensure_group(keys.stream, "g")
    ids = _add(r, keys.stream, 4)
    slow = broker.read(keys.stream, "g", "slow", count=4, block_ms=100)
    claimed = broker.claim_stale(keys.stream, "g", "fast", min_idle_ms=0, count=10)
    assert [m.id for m in claimed] == ids
    assert all(m.deliveries == 2 for m in claimed)
    first = broker.complete(keys.stream, "g", keys.results, keys.dead, [_result(m.id) for m in claimed], [])
    late = broker.complete(keys.stream, "g", keys.results, keys.dead, [_result(m.id, "negative") for m in slow], [])
    assert (first.results, late.results, late.duplicates) == (4, 0, 4)
    assert sorted(f["source_id"] for _, f in r.xrange(keys.results)) == sorted(ids)
    assert {f["label"] for _, f in r.xrange(keys.results)} == {"positive"}


def test_own_pending_after_restart_and_ack_only(redis_server: RedisServer, r: redis.Redis, keys: Keys) -> None:
    """A consumer restarted under its name gets its pending messages back; ack_only writes nothing."""
    broker = RedisBroker(redis_server.url)
    broker.ensure_group(keys.stream, "g")
    ids = _add(r, keys.stream, 3)
    broker.read(keys.stream, "g", "c1", count=3, block_ms=100)
    r.xdel(keys.stream, ids[1])
    back = broker.read_own_pending(keys.stream, "g", "c1", count=10)
    assert [m.id for m in back] == ids
    assert back[1].fields is None, "a deleted entry comes back without fields"
    assert (back[0].deliveries, back[2].deliveries) == (2, 2), "re-reading counts as a delivery"
    done = broker.complete(keys.stream, "g", None, keys.dead, [_result(ids[0])], [], ack_only=ids[1:])
    assert (done.results, done.acked) == (0, 3)
    assert r.xlen(keys.results) == 0 and r.xpending(keys.stream, "g")["pending"] == 0


def test_groups_report_pending_and_lag(redis_server: RedisServer, r: redis.Redis, keys: Keys) -> None:
    """XINFO GROUPS: consumers, pending, lag per group; an absent stream has no groups."""
    broker = RedisBroker(redis_server.url)
    assert broker.groups(keys.stream) == []
    assert not broker.group_exists(keys.stream, "a")
    broker.ensure_group(keys.stream, "a")
    broker.ensure_group(keys.stream, "b")
    _add(r, keys.stream, 10)
    broker.read(keys.stream, "a", "c", count=4, block_ms=100)
    info = {g.name: g for g in broker.groups(keys.stream)}
    assert (info["a"].pending, info["a"].lag, info["a"].consumers) == (4, 6, 1)
    assert (info["b"].pending, info["b"].lag, info["b"].consumers) == (0, 10, 0)


def test_trim_only_what_every_group_acknowledged(redis_server: RedisServer, r: redis.Redis, keys: Keys) -> None:
    """XTRIM MINID cuts below the oldest entry any group still needs: pending or undelivered survive."""
    broker = RedisBroker(redis_server.url)
    assert broker.trim_acknowledged(keys.stream) == 0  # no stream, no groups
    ids = _add(r, keys.stream, 20)
    assert broker.trim_acknowledged(keys.stream) == 0, "without groups nothing is known to be read"
    broker.ensure_group(keys.stream, "fast")
    broker.ensure_group(keys.stream, "slow")
    fast = broker.read(keys.stream, "fast", "c", count=20, block_ms=100)
    broker.complete(keys.stream, "fast", keys.results, keys.dead, [_result(m.id) for m in fast], [])
    assert broker.trim_acknowledged(keys.stream) == 0, "group slow has read nothing"
    slow = broker.read(keys.stream, "slow", "c", count=12, block_ms=100)
    # slow acknowledges 0..4 and 6..9, keeps 5, 10, 11 pending; 12..19 are undelivered to it.
    done = [m for i, m in enumerate(slow) if i < 10 and i != 5]
    broker.complete(keys.stream, "slow", keys.results, keys.dead, [_result(m.id) for m in done], [])
    assert broker.trim_acknowledged(keys.stream) == 5
    remaining = [i for i, _ in r.xrange(keys.stream)]
    assert remaining == ids[5:], "the oldest pending entry and everything after it stay"
    rest = broker.read_own_pending(keys.stream, "slow", "c", count=20)
    assert [m.id for m in rest] == [ids[5], ids[10], ids[11]]
    broker.complete(keys.stream, "slow", keys.results, keys.dead, [_result(m.id) for m in rest], [])
    assert broker.trim_acknowledged(keys.stream) == 6
    assert [i for i, _ in r.xrange(keys.stream)] == ids[11:], "trimmed up to slow's last-delivered id"
    unread = broker.read(keys.stream, "slow", "c", count=20, block_ms=100)
    assert [m.id for m in unread] == ids[12:], "no undelivered entry was trimmed"


def test_forget_only_idle_consumers_with_nothing_pending(redis_server: RedisServer, r: redis.Redis, keys: Keys) -> None:
    """Gone consumers (idle, nothing pending) are removed; one holding a message never is."""
    broker = RedisBroker(redis_server.url)
    broker.ensure_group(keys.stream, "g")
    _add(r, keys.stream, 2)
    broker.read(keys.stream, "g", "gone", count=1, block_ms=100)  # its message is claimed away below
    broker.read(keys.stream, "g", "holder", count=1, block_ms=100)  # keeps one pending
    broker.claim_stale(keys.stream, "g", "me", min_idle_ms=0, count=1)
    assert {c["name"]: c["pending"] for c in r.xinfo_consumers(keys.stream, "g")} == {"holder": 1, "gone": 0, "me": 1}
    assert broker.forget_idle_consumers(keys.stream, "g", min_idle_ms=60_000, keep="me") == []
    import time

    time.sleep(0.3)
    assert broker.forget_idle_consumers(keys.stream, "g", min_idle_ms=200, keep="me") == ["gone"]
    assert sorted(c["name"] for c in r.xinfo_consumers(keys.stream, "g")) == ["holder", "me"]
    assert r.xpending(keys.stream, "g")["pending"] == 2


def test_refused_write_leaves_the_message_pending(redis_server: RedisServer, r: redis.Redis, keys: Keys) -> None:
    """Redis out of memory: the script fails before acknowledging, so the batch stays pending, no result."""
    broker = RedisBroker(redis_server.url)
    broker.ensure_group(keys.stream, "g")
    ids = _add(r, keys.stream, 3)
    broker.read(keys.stream, "g", "c", count=3, block_ms=100)
    r.config_set("maxmemory", 1)  # noeviction (the default policy): every write is refused
    try:
        with pytest.raises(redis.ResponseError, match="maxmemory"):
            broker.complete(keys.stream, "g", keys.results, keys.dead, [_result(i) for i in ids], [])
    finally:
        r.config_set("maxmemory", 0)
    assert r.xpending(keys.stream, "g")["pending"] == 3
    assert r.xlen(keys.results) == 0
    done = broker.complete(keys.stream, "g", keys.results, keys.dead, [_result(i) for i in ids], [])
    assert done.results == 3 and r.xpending(keys.stream, "g")["pending"] == 0

"""Many producers and consumers as real processes: one result per message, under kill -9 and SIGTERM."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
import redis
import requests

from tests.stream.conftest import Keys, Procs, RedisServer, reviews, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def result_counts(r: redis.Redis, keys: Keys) -> Counter[str]:
    """How many results each source message id has."""
    return Counter(fields["source_id"] for _, fields in r.xrange(keys.results))


def metric(url: str, name: str) -> float:
    """One sample's value from a /metrics page (0 when absent)."""
    for line in requests.get(url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_three_producers_three_consumers_one_result_each(procs: Procs, r: redis.Redis, keys: Keys) -> None:
    """3 producers and 3 consumers at once: every message gets exactly one result, nothing stays pending."""
    consumers = [procs.consumer(f"c{i}", "scorers", "--batch-size", "32", wait=False) for i in range(3)]
    for consumer in consumers:
        consumer.wait_ready()
    per_producer = 600
    producers = [
        procs.producer(f"p{i}", reviews(per_producer, tag=f"p{i}-"), "--chunk-size", "50", "--no-trim")
        for i in range(3)
    ]
    for producer in producers:
        assert producer.process.wait(timeout=120) == 0, producer.log()
        assert json.loads(producer.log().splitlines()[-1])["produced"] == per_producer
    total = 3 * per_producer
    wait_until(lambda: r.xlen(keys.results) >= total, 120, f"{total} results")
    sent = [i for i, _ in r.xrange(keys.stream)]
    assert len(sent) == total
    counts = result_counts(r, keys)
    assert set(counts) == set(sent), "every message has a result, and no result is for something else"
    assert max(counts.values()) == 1, f"duplicate results: {[i for i, n in counts.items() if n > 1][:5]}"
    group = r.xinfo_groups(keys.stream)[0]
    assert (group["pending"], group["lag"]) == (0, 0)
    processed = [metric(c.url, 'reviewserve_stream_messages_total{outcome="processed"}') for c in consumers]
    assert sum(processed) == total
    assert sum(1 for p in processed if p > 0) >= 2, f"the work was not shared: {processed}"
    for consumer in consumers:
        assert consumer.terminate() == 0, consumer.log()
    assert r.xlen(keys.dead) == 0


def test_kill_9_mid_batch_pending_claimed_and_scored_once(procs: Procs, r: redis.Redis, keys: Keys) -> None:
    """kill -9 of a consumer holding a batch: another claims its pending messages, one result each."""
    total = 3000
    r.xgroup_create(keys.stream, "scorers", id="0", mkstream=True)
    pipe = r.pipeline()
    for text in reviews(total, words=120):  # long reviews: a 400-message batch takes a while to score
        pipe.xadd(keys.stream, {"review": text})
    pipe.execute()
    orphaned: list[str] = []
    for attempt in range(5):  # the kill must land while the victim holds a batch; retry if it acked first
        name = f"victim{attempt}"
        victim = procs.consumer(name, "scorers", "--batch-size", "400", "--claim-idle-ms", "1000")

        def holds_batch(name: str = name) -> bool:
            consumers = {c["name"]: c["pending"] for c in r.xinfo_consumers(keys.stream, "scorers")}
            return consumers.get(name, 0) > 0

        wait_until(holds_batch, 60, "the victim to hold a batch", interval=0.005)
        victim.kill9()
        orphaned = [p["message_id"] for p in r.xpending_range(keys.stream, "scorers", "-", "+", 1000, name)]
        if orphaned:
            break
    assert orphaned, "never caught a consumer with a batch in hand"
    before = result_counts(r, keys)
    assert not any(before[i] for i in orphaned), "the killed batch had not been acknowledged"

    rescuer = procs.consumer(
        "rescuer", "scorers", "--batch-size", "200", "--claim-idle-ms", "1000", "--forget-consumers-after-ms", "3000"
    )
    wait_until(lambda: r.xlen(keys.results) >= total, 180, f"{total} results")
    counts = result_counts(r, keys)
    assert set(counts) == {i for i, _ in r.xrange(keys.stream)}
    assert max(counts.values()) == 1
    assert all(counts[i] == 1 for i in orphaned)
    assert r.xpending(keys.stream, "scorers")["pending"] == 0
    assert metric(rescuer.url, 'reviewserve_stream_messages_total{outcome="duplicate"}') == 0
    # The dead victims, their entries claimed, are forgotten by the group; the rescuer stays.
    wait_until(
        lambda: [c["name"] for c in r.xinfo_consumers(keys.stream, "scorers")] == ["rescuer"], 30, "victims forgotten"
    )
    assert rescuer.terminate() == 0
    assert "claimed" in rescuer.log()


def test_poison_and_redelivered_messages_are_dead_lettered(
    procs: Procs, r: redis.Redis, keys: Keys, redis_server: RedisServer
) -> None:
    """Unscoreable messages and one delivered too often land in the dead-letter stream with a reason."""
    r.xgroup_create(keys.stream, "scorers", id="0", mkstream=True)
    raw = redis.Redis.from_url(redis_server.url)  # bytes in and out, for a field that is not UTF-8
    good = [r.xadd(keys.stream, {"review": text}) for text in reviews(5)]
    expected = {
        r.xadd(keys.stream, {"json": "{not json"}): "invalid_json",
        r.xadd(keys.stream, {"text": "wrong field"}): "validation_error",
        r.xadd(keys.stream, {"review": "   "}): "empty_review",
        r.xadd(keys.stream, {"review": "long " * 100}): "review_too_long",
        raw.xadd(keys.stream, {b"review": b"\xff\xfe not utf-8"}).decode(): "invalid_encoding",
        r.xadd(keys.stream, {"json": json.dumps({"review": 42})}): "invalid_text",
    }
    good += [r.xadd(keys.stream, {"json": json.dumps({"review": "I love this phone"})})]
    # A message that keeps taking its consumers down: delivered to a ghost, then re-claimed 5 times.
    cursed = r.xadd(keys.stream, {"review": "fine text, unlucky message"})
    raw.xreadgroup("scorers", "ghost", {keys.stream: ">"}, count=100)
    for _ in range(5):
        r.xclaim(keys.stream, "scorers", "ghost", 0, [cursed])
    expected[cursed] = "max_deliveries"
    # Everything else went to the ghost too: let the consumer claim it all (short idle time).
    consumer = procs.consumer(
        "c1", "scorers", "--claim-idle-ms", "300", "--max-deliveries", "3", MAX_REVIEW_CHARS="200"
    )
    wait_until(lambda: r.xpending(keys.stream, "scorers")["pending"] == 0, 60, "nothing pending")
    dead = {f["source_id"]: f for _, f in r.xrange(keys.dead)}
    assert {i: f["reason"].split(":")[0] for i, f in dead.items()} == expected
    assert all(f["group"] == "scorers" and len(f["reason"]) > len("max_deliveries: ") for f in dead.values())
    assert "delivered 7 times (limit 3)" in dead[cursed]["reason"]
    assert sorted(result_counts(r, keys).elements()) == sorted(good)
    assert metric(consumer.url, 'reviewserve_stream_messages_total{outcome="dead_lettered"}') == len(expected)
    assert metric(consumer.url, 'reviewserve_stream_dead_letters_total{reason="max_deliveries"}') == 1
    assert consumer.terminate() == 0


def test_sigterm_finishes_the_batch_and_leaves_nothing_pending(procs: Procs, r: redis.Redis, keys: Keys) -> None:
    """SIGTERM while busy: the batch in hand is scored and acknowledged, exit 0, no pending entry."""
    total = 4000
    r.xgroup_create(keys.stream, "scorers", id="0", mkstream=True)
    pipe = r.pipeline()
    for text in reviews(total, words=40):
        pipe.xadd(keys.stream, {"review": text})
    pipe.execute()
    consumer = procs.consumer("c1", "scorers", "--batch-size", "200")
    wait_until(lambda: r.xlen(keys.results) >= 400, 60, "some results")
    assert consumer.terminate(timeout=30) == 0, consumer.log()
    assert r.xpending(keys.stream, "scorers")["pending"] == 0
    group = r.xinfo_groups(keys.stream)[0]
    delivered = [i for i, _ in r.xrange(keys.stream, max=group["last-delivered-id"])]
    assert 0 < len(delivered) < total, "stopped mid-stream"
    counts = result_counts(r, keys)
    assert set(counts) == set(delivered) and max(counts.values()) == 1
    assert '"message": "consumer stopped"' in consumer.log()


def test_redis_out_of_memory_is_waited_out(procs: Procs, r: redis.Redis, keys: Keys) -> None:
    """Redis refuses writes for a while: the consumer keeps its batch, retries, then completes it once."""
    consumer = procs.consumer("c1", "scorers", "--max-deliveries", "2")
    # The reviews and the memory limit in one transaction: the waiting consumer is served after it,
    # so it reads the batch and then finds every write refused (noeviction).
    pipe = r.pipeline(transaction=True)
    for text in reviews(20):
        pipe.xadd(keys.stream, {"review": text})
    pipe.config_set("maxmemory", 1)
    try:
        ids = pipe.execute()[:-1]
        wait_until(lambda: "cannot write the batch, retrying" in consumer.log(), 30, "the consumer to retry")
        time.sleep(3)  # several retries; a re-read would count deliveries past --max-deliveries 2
        assert r.xlen(keys.results) == 0
        ready = requests.get(consumer.url + "/readyz", timeout=5)
        assert ready.status_code == 503 and "OutOfMemoryError" in ready.json()["reason"]
    finally:
        r.config_set("maxmemory", 0)
    wait_until(lambda: r.xlen(keys.results) >= len(ids), 30, "the results")
    assert sorted(result_counts(r, keys).elements()) == sorted(ids)
    assert r.xlen(keys.dead) == 0, "no message was dead-lettered for the retries"
    assert r.xpending(keys.stream, "scorers")["pending"] == 0
    assert consumer.terminate() == 0

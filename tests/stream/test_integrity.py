"""Stream integrity under the cases a data team hits (issue 18, items 8-12 and 15), on a real redis-server."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from tests.conftest import MODEL_DIR, ROOT, free_port
from tests.stream.conftest import REDIS_SERVER, Keys, Procs, RedisServer, reviews, wait_until
from tests.stream.proxy import LosingProxy
from tests.systools import missing_tool

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _drained(r: redis.Redis, keys: Keys) -> bool:
    return all(g["pending"] == 0 and g["lag"] == 0 for g in r.xinfo_groups(keys.stream))


def _metric(url: str, sample: str) -> float | None:
    for line in requests.get(url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_declared_groups_see_every_entry_and_a_late_group_is_warned(procs: Procs, r: redis.Redis, keys: Keys) -> None:
    """Item 8: `produce --group` declares groups first, so trimming keeps what they have not read.

    The issue's case: `scorers` acknowledges 100, 10 more are produced, then `archiver` starts.
    Declared: the archiver scores all 110. Not declared (a second stream): it sees what was left,
    and its consumer says loudly how many entries it missed.
    """
    declared = ["--group", "scorers", "--group", "archiver"]
    first = procs.producer("p1", reviews(100), *declared)
    assert first.process.wait(timeout=60) == 0, first.log()
    scorer = procs.consumer("s1", "scorers")
    wait_until(lambda: r.xlen(keys.results) == 100, 60, "100 results")
    second = procs.producer("p2", reviews(10, tag="late-"), *declared)
    assert second.process.wait(timeout=60) == 0, second.log()
    archive = keys.results + ":archive"
    archiver = procs.consumer("a1", "archiver", "--results", archive)
    wait_until(lambda: _drained(r, keys), 60, "both groups to drain")
    assert r.xlen(archive) == 110, "the archiver group saw every entry"
    assert "were trimmed or deleted" not in archiver.log()
    for proc in (scorer, archiver):
        assert proc.terminate() == 0

    # Without declaring the archiver: trimmed entries are gone for it, and it says so.
    other = Keys(keys.stream + ":undeclared", keys.results + ":u", keys.dead + ":u")
    late = Procs(procs.tmp_path, procs.redis_url, other)
    try:
        assert late.producer("p3", reviews(100), "--group", "scorers").process.wait(timeout=60) == 0
        scorer = late.consumer("s1", "scorers")
        wait_until(lambda: r.xlen(other.results) == 100, 60, "100 results")
        assert scorer.terminate() == 0  # scorers has acknowledged 100 and reads no further
        assert late.producer("p4", reviews(10, tag="late-")).process.wait(timeout=60) == 0
        archiver = late.consumer("a1", "archiver", "--results", archive + ":u")

        def archived() -> bool:
            return any(g["name"] == "archiver" and g["lag"] == 0 for g in r.xinfo_groups(other.stream))

        wait_until(archived, 60, "the archiver group to drain")
        wait_until(lambda: r.xpending(other.stream, "archiver")["pending"] == 0, 60, "nothing pending")
        assert r.xlen(archive + ":u") == 11, "it sees only what was left: the issue's 11 of 110"
        assert "group 'archiver' was created on stream" in archiver.log()
        assert "after 99 of its entries were trimmed or deleted" in archiver.log()
    finally:
        late.cleanup()


def test_lost_xadd_reply_does_not_duplicate_the_chunk(redis_server: RedisServer, r: redis.Redis, keys: Keys) -> None:
    """Item 9: the connection drops after Redis appended the chunk; the client's retry appends nothing."""
    proxy = LosingProxy(redis_server.port, marker=b"LOSE-THIS-REPLY")
    try:
        lines = [f"review {i}" for i in range(9)] + ["LOSE-THIS-REPLY but keep me"]
        proc = subprocess.run(
            [sys.executable, "-m", "reviewserve.cli", "stream", "produce", "--stream", keys.stream,
             "--redis-url", proxy.url],
            input="".join(line + "\n" for line in lines), capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
    finally:
        proxy.close()
    assert proxy.dropped == 1, "the reply of the chunk's append was lost"
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["produced"] == 10
    assert [f["review"] for _, f in r.xrange(keys.stream)] == lines, "each review once, in order"


def test_group_without_consumers_fails_the_producer_naming_it(procs: Procs, r: redis.Redis, keys: Keys) -> None:
    """Item 10 (and issue 17 item 9): back-pressure is bounded by --max-wait and names the group and the remedy."""
    r.xgroup_create(keys.stream, "forgotten", id="0", mkstream=True)
    producer = procs._spawn(
        "p", ["produce", "--stream", keys.stream, "--max-lag", "5", "--chunk-size", "5", "--max-wait", "2"],
        stdin="".join(f"{line}\n" for line in reviews(20)).encode(),
    )  # fmt: skip
    assert producer.process.wait(timeout=60) == 1, producer.log()
    log = producer.log()
    assert "gave up after waiting 2 s (--max-wait)" in log
    assert "group 'forgotten' (0 consumers) has 10 undelivered entries > --max-lag 5" in log
    assert "reviewserve stream consume --group forgotten" in log and "XGROUP DESTROY" in log
    summary = [json.loads(line) for line in log.splitlines() if line.startswith('{"stream"')]
    assert summary[-1]["produced"] == 10 and r.xlen(keys.stream) == 10


def test_results_and_dead_letters_are_retained_to_their_maxlen(procs: Procs, r: redis.Redis, keys: Keys) -> None:
    """Item 11: --results-maxlen / --dead-letter-maxlen bound both streams; their length is a metric."""
    consumer = procs.consumer("c1", "scorers", "--results-maxlen", "50", "--dead-letter-maxlen", "20")
    pipe = r.pipeline(transaction=False)
    for i, text in enumerate(reviews(600)):
        pipe.xadd(keys.stream, {"review": text if i % 2 else " "})  # every other one is dead-lettered
    pipe.execute()
    wait_until(lambda: _drained(r, keys), 60, "the group to drain")
    results, dead = r.xlen(keys.results), r.xlen(keys.dead)
    # Approximate trimming (MAXLEN ~) drops whole nodes of 100 entries: at least maxlen stay, at most a node more.
    assert 50 <= results <= 150, results
    assert 20 <= dead <= 120, dead  # 300 dead letters written
    assert _metric(consumer.url, f'reviewserve_stream_length{{stream="{keys.results}"}}') == results
    assert _metric(consumer.url, f'reviewserve_stream_length{{stream="{keys.dead}"}}') == dead
    assert _metric(consumer.url, f'reviewserve_stream_length{{stream="{keys.stream}"}}') == r.xlen(keys.stream)
    assert consumer.terminate() == 0


def test_entries_deleted_while_pending_are_dead_lettered(procs: Procs, r: redis.Redis, keys: Keys) -> None:
    """Item 12: XAUTOCLAIM (Redis 7) drops deleted entries from the pending list: each gets a dead letter."""
    r.xgroup_create(keys.stream, "scorers", id="0", mkstream=True)
    ids = [r.xadd(keys.stream, {"review": text}) for text in reviews(6)]
    r.xreadgroup("scorers", "ghost", {keys.stream: ">"}, count=10)  # a consumer that died holding them
    r.xdel(keys.stream, ids[1], ids[4])
    consumer = procs.consumer("c1", "scorers", "--claim-idle-ms", "300")
    wait_until(lambda: r.xpending(keys.stream, "scorers")["pending"] == 0, 60, "nothing pending")
    wait_until(lambda: r.xlen(keys.dead) == 2, 30, "two dead letters")
    dead = {f["source_id"]: f for _, f in r.xrange(keys.dead)}
    assert set(dead) == {ids[1], ids[4]}
    assert all(f["reason"].startswith("deleted: ") and f["group"] == "scorers" for f in dead.values())
    assert sorted(f["source_id"] for _, f in r.xrange(keys.results)) == sorted(ids[:1] + ids[2:4] + ids[5:])
    assert _metric(consumer.url, 'reviewserve_stream_dead_letters_total{reason="deleted"}') == 2
    assert consumer.terminate() == 0


def _is_free(port: int) -> bool:
    """Whether nobody listens on ``port`` of 127.0.0.1 right now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def cluster_node(tmp_path: Path) -> Iterator[str]:
    """A real 3-node Redis Cluster (`--cluster-enabled yes`, slots shared out by `redis-cli --cluster
    create`, state ok); the URL of its first node."""
    binary = REDIS_SERVER if Path(REDIS_SERVER).exists() else shutil.which("redis-server")
    if binary is None:
        missing_tool("redis-server", "redis-server")
    cli = str(Path(binary).with_name("redis-cli")) if Path(binary).with_name("redis-cli").exists() else "redis-cli"
    if shutil.which(cli) is None:
        missing_tool("redis-cli", "redis-tools")
    ports: list[int] = []
    for port in iter(free_port, None):  # the cluster bus listens on port + 10000: both must be free
        if port <= 55535 and _is_free(port + 10000) and port not in ports:
            ports.append(port)
        if len(ports) == 3:
            break
    processes = []
    try:
        for port in ports:
            folder = tmp_path / f"node-{port}"
            folder.mkdir()
            cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes", "--save", ""]
            cmd += ["--cluster-config-file", str(folder / "nodes.conf"), "--dir", str(folder), "--appendonly", "no"]
            processes.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        clients = [redis.Redis(port=port) for port in ports]

        def answer() -> bool:
            try:
                return all(client.ping() for client in clients)
            except redis.ConnectionError:
                return False

        wait_until(answer, 20, "the cluster nodes to answer")
        create = [cli, "--cluster", "create", *(f"127.0.0.1:{port}" for port in ports), "--cluster-replicas", "0"]
        done = subprocess.run([*create, "--cluster-yes"], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr

        def formed() -> bool:
            infos = [c.cluster("info") for c in clients]
            return all(i["cluster_state"] == "ok" and int(i["cluster_known_nodes"]) == 3 for i in infos)

        wait_until(formed, 30, "the cluster to form")
        assert int(clients[0].cluster("info")["cluster_slots_assigned"]) == 16384
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=20)


def test_redis_cluster_is_refused_at_start(cluster_node: str) -> None:
    """Item 15: produce, consume and groups refuse a real 3-node Redis Cluster with a clear message (no retry loop)."""
    env = {"MODEL_PATH": str(MODEL_DIR), "PATH": "/usr/bin:/bin", "REDIS_URL": cluster_node}
    for args in (["produce"], ["consume", "--group", "g", "--consumer", "c"], ["groups"]):
        proc = subprocess.run(
            [sys.executable, "-m", "reviewserve.cli", "stream", *args],
            input="a review\n", capture_output=True, text=True, timeout=60, cwd=ROOT, env=env, check=False,
        )  # fmt: skip
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert "is a Redis Cluster node (cluster_enabled:1): not supported" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    ports = [int(node.split(":")[1].split("@")[0]) for node in redis.Redis.from_url(cluster_node).cluster("nodes")]
    assert len(ports) == 3, ports
    for port in ports:
        assert Counter(redis.Redis(port=port).keys()) == Counter(), "nothing was written on any node"

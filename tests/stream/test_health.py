"""The consumer's health port over HTTP, and clean errors for bad command lines."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import requests

from tests.conftest import MODEL_DIR, ROOT, free_port
from tests.stream.conftest import Keys, Procs, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_ready_alive_and_metrics(procs: Procs, r: redis.Redis, keys: Keys) -> None:
    """/readyz and /healthz 200 with a reachable Redis and the group; /metrics in Prometheus format."""
    consumer = procs.consumer("c1", "scorers")
    for path in ("/readyz", "/healthz"):
        resp = requests.get(consumer.url + path, timeout=5)
        assert (resp.status_code, resp.json()) == (200, {"status": "ok"})
    r.xadd(keys.stream, {"review": "This Chatbot is amazing"})
    wait_until(lambda: r.xlen(keys.results) == 1, 30, "one result")
    resp = requests.get(consumer.url + "/metrics", timeout=5)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/plain")
    text = resp.text
    for sample in (
        'reviewserve_stream_messages_total{outcome="processed"} 1.0',
        'reviewserve_stream_predictions_total{label="positive"} 1.0',
        "reviewserve_stream_batch_size_count 1.0",
        "reviewserve_stream_processing_seconds_count 1.0",
        f'reviewserve_stream_group_pending{{group="scorers",stream="{keys.stream}"}} 0.0',
        f'reviewserve_stream_group_lag{{group="scorers",stream="{keys.stream}"}} 0.0',
        'reviewserve_model_info{name="review-sentiment",version="1"} 1.0',
    ):
        assert sample in text, sample
    assert requests.get(consumer.url + "/nope", timeout=5).status_code == 404
    # Another group's backlog shows up in the gauges too (XINFO GROUPS covers every group).
    r.xgroup_create(keys.stream, "idle", id="0")
    assert (
        f'reviewserve_stream_group_lag{{group="idle",stream="{keys.stream}"}} 1.0'
        in requests.get(consumer.url + "/metrics", timeout=5).text
    )
    assert consumer.terminate() == 0


def test_not_ready_without_redis_but_alive(procs: Procs) -> None:
    """Redis unreachable: /readyz 503 naming the reason, /healthz 200 (restarting would not help), exit 0."""
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        dead_url = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
        consumer = procs.consumer("c1", "scorers", "--redis-url", dead_url, wait=False)

        def answering() -> list[requests.Response]:  # a list: a 503 Response is falsy
            try:
                return [requests.get(consumer.url + "/readyz", timeout=2)]
            except requests.ConnectionError:
                return []

        [resp] = wait_until(answering, 60, "the health port")  # type: ignore[misc]
        assert resp.status_code == 503
        assert resp.json()["reason"].startswith("broker unreachable")
        assert requests.get(consumer.url + "/healthz", timeout=5).status_code == 200
        assert requests.get(consumer.url + "/metrics", timeout=5).status_code == 200
        assert consumer.terminate() == 0, consumer.log()
    assert "Traceback" not in consumer.log()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reviewserve.cli", "stream", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"MODEL_PATH": str(MODEL_DIR), "PATH": "/usr/bin:/bin"},
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["consume", "--group", "g"], "Missing option '--consumer'"),
        (["consume", "--group", "g", "--consumer", "c", "--sink", "sql"], "--sink sql needs --database-url"),
        (["consume", "--group", "g", "--consumer", "c", "--sink", "sql", "--database-url", "mysql://x/y"], "mysql"),
        (["consume", "--group", "g", "--consumer", "c", "--batch-size", "0"], "--batch-size"),
        (["produce", "--format", "xml"], "'xml' is not one of"),
        (["produce", "/no/such/file"], "does not exist"),
    ],
)
def test_bad_command_lines_are_named(args: list[str], message: str) -> None:
    """Wrong flags give a one-line error naming the problem, never a traceback."""
    proc = _cli(*args)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_health_port_in_use_is_named() -> None:
    """A taken health port is reported as such."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", free_port()))
        sock.listen()
        port = sock.getsockname()[1]
        proc = _cli("consume", "--group", "g", "--consumer", "c", "--health-port", str(port))
    assert proc.returncode == 1
    assert f"--health-port {port}" in proc.stderr and "Traceback" not in proc.stderr


def test_wrong_key_type_is_named(procs: Procs, r: redis.Redis, keys: Keys) -> None:
    """A key that is not a stream: producer and consumer say so and exit 1, no traceback."""
    r.set(keys.stream, "not a stream")
    producer = procs.producer("p", ["a review"])
    consumer = procs.consumer("c1", "scorers", wait=False)
    for proc in (producer, consumer):
        assert proc.process.wait(timeout=60) == 1
        assert "Redis refused: WRONGTYPE" in proc.log() and "Traceback" not in proc.log()


def test_consumers_and_archiver_start_side_by_side_on_ephemeral_ports(
    procs: Procs, r: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    """Issue 17 item 3: with no --health-port, each process serves on an ephemeral port it logs (the
    README's many-to-many commands on one machine); the chart sets 9697 explicitly."""
    started = []
    for name, group, extra in (
        ("c1", "scorers", []),
        ("c2", "scorers", []),
        ("a1", "archiver", ["--sink", "sql", "--database-url", f"sqlite:///{tmp_path / 'archive.db'}"]),
    ):
        args = ["consume", "--group", group, "--consumer", name, *keys.args(), "--block-ms", "200", *extra]
        started.append(procs._spawn(f"{group}-{name}", args))
    ports = []
    for proc in started:
        line = wait_until(
            lambda p=proc: next((x for x in p.log().splitlines() if '"health_port"' in x), None), 60, "the port"
        )
        proc.health_port = json.loads(str(line))["health_port"]
        ports.append(proc.health_port)
        proc.wait_ready()
    assert len(set(ports)) == 3 and 9697 not in ports
    assert all(proc.process.poll() is None for proc in started)
    for proc in started:
        assert proc.terminate() == 0, proc.log()


def test_chart_sets_the_health_port() -> None:
    """The chart keeps 9697: it sets STREAM_HEALTH_PORT from stream.healthPort (default 9697)."""
    template = (ROOT / "charts/reviewserve/templates/stream-deployment.yaml").read_text()
    assert "STREAM_HEALTH_PORT" in template and "$s.healthPort" in template
    assert "healthPort: 9697" in (ROOT / "charts/reviewserve/values.yaml").read_text()

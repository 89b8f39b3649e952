"""The service for real: `reviewserve serve` -> gunicorn with 2+ workers on a free port, over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import SEED_REVIEW, Server
from tests.promtext import sample
from tests.systools import missing_tool

pytestmark = pytest.mark.slow


def test_seed_curl_works(live_server: Server) -> None:
    curl = shutil.which("curl")
    if curl is None:
        missing_tool("curl", "curl")
    out = subprocess.run(
        [
            curl,
            "-sS",
            "-X",
            "POST",
            f"localhost:{live_server.port}/predict",
            "-H",
            "Content-Type: application/json",
            "-d",
            '{"review": "This Chatbot is amazing"}',
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout)["prediction"] == "positive"


def test_lists_v2_and_errors_over_http(live_server: Server) -> None:
    url = live_server.url
    body = requests.post(f"{url}/predict", json={"reviews": ["love it", "hate it"]}, timeout=5).json()
    assert [p["prediction"] for p in body["predictions"]] == ["positive", "negative"]
    infer = {"inputs": [{"name": "review", "shape": [1], "datatype": "BYTES", "data": ["superb"]}]}
    out = requests.post(f"{url}/v2/models/review-sentiment/infer", json=infer, timeout=5).json()
    assert out["outputs"][0]["data"] == ["positive"]
    assert (
        requests.post(f"{url}/predict", data="{", headers={"Content-Type": "application/json"}, timeout=5).status_code
        == 400
    )
    assert (
        requests.post(f"{url}/predict", data="hi", headers={"Content-Type": "text/plain"}, timeout=5).status_code == 415
    )
    assert requests.post(f"{url}/predict", json={"review": None}, timeout=5).status_code == 422
    big = requests.post(
        f"{url}/predict", data=b"x" * 2_000_000, headers={"Content-Type": "application/json"}, timeout=5
    )
    assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"
    assert requests.get(f"{url}/no/such/path", timeout=5).json()["error"]["code"] == "not_found"
    assert requests.put(f"{url}/predict", timeout=5).status_code == 405


def test_json_log_line_per_request(live_server: Server) -> None:
    requests.post(
        f"{live_server.url}/predict",
        json={"reviews": ["a", "b", "c"]},
        headers={"X-Request-ID": "log-probe-1"},
        timeout=5,
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in live_server.log().splitlines() if "log-probe-1" in line]
        if lines:
            break
        time.sleep(0.1)
    [entry] = lines
    assert entry["method"] == "POST" and entry["path"] == "/predict" and entry["status"] == 200
    assert entry["reviews"] == 3 and entry["duration_ms"] > 0 and entry["level"] == "INFO"


@pytest.mark.parametrize("workers", [2, 3])
def test_metrics_sum_across_workers(server_factory, workers: int) -> None:
    server: Server = server_factory(workers=workers)
    server.wait_workers(workers)
    # A worker may still be starting when the first answers; send rounds until two processes have served.
    n = 0
    deadline = time.monotonic() + 30
    while n == 0 or (len(list(server.metrics_dir.rglob("counter_[0-9]*.db"))) < 2 and time.monotonic() < deadline):
        with ThreadPoolExecutor(8) as pool:
            statuses = list(
                pool.map(
                    lambda _: requests.post(f"{server.url}/predict", json=SEED_REVIEW, timeout=10).status_code,
                    range(60),
                )
            )
        assert statuses == [200] * 60
        n += 60
    for _ in range(20):  # scrape a few times: whichever worker answers, the sums are the same
        text = requests.get(f"{server.url}/metrics", timeout=5).text
        count = sample(text, "flask_http_request_duration_seconds_count", path="/predict")
        assert count == n, text
        assert sample(text, "reviewserve_predictions_total", label="positive") == n
        assert sample(text, "reviewserve_model_info", name="review-sentiment", version="1") == 1
    files = {p.name.rsplit("_", 1)[-1] for p in server.metrics_dir.rglob("counter_[0-9]*.db")}
    assert len(files) >= 2, f"requests were served by one process only: {files}"


def test_a_new_server_on_a_used_folder_starts_from_nothing(server_factory, tmp_path: Path) -> None:
    """A restart on the same metrics folder counts from zero: the stopped server removed its folder, the
    folder of a server killed with SIGKILL (master and workers, as a container restart does) is swept."""
    metrics_dir = tmp_path / "reused-metrics"
    first: Server = server_factory(workers=1, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    for _ in range(3):
        assert requests.post(f"{first.url}/predict", json=SEED_REVIEW, timeout=5).status_code == 200
    text = requests.get(f"{first.url}/metrics", timeout=5).text
    assert sample(text, "flask_http_request_duration_seconds_count", path="/predict") == 3
    assert first.stop() == 0
    assert not list(metrics_dir.glob("server-*")), "a stopped server left its metrics folder"

    killed: Server = server_factory(workers=1, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    for _ in range(2):
        assert requests.post(f"{killed.url}/predict", json=SEED_REVIEW, timeout=5).status_code == 200
    [stale] = metrics_dir.glob("server-*")
    assert any(stale.glob("counter_*.db"))
    for pid in [*killed.worker_pids(), killed.process.pid]:
        os.kill(pid, signal.SIGKILL)
    killed.process.wait(timeout=10)
    assert stale.is_dir(), "nothing runs at SIGKILL: the folder stays until the next start"

    second: Server = server_factory(workers=1, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    assert not stale.exists(), "the folder of the killed server was not removed"
    text = requests.get(f"{second.url}/metrics", timeout=5).text
    assert sample(text, "flask_http_request_duration_seconds_count", path="/predict") is None, text
    assert sample(text, "reviewserve_predictions_total") is None, text
    assert requests.post(f"{second.url}/predict", json=SEED_REVIEW, timeout=5).status_code == 200
    text = requests.get(f"{second.url}/metrics", timeout=5).text
    assert sample(text, "flask_http_request_duration_seconds_count", path="/predict") == 1
    assert sample(text, "reviewserve_predictions_total", label="positive") == 1


def test_killed_worker_is_replaced_and_service_keeps_answering(server_factory) -> None:
    server: Server = server_factory(workers=2)
    before = server.wait_workers(2)
    os.kill(before[0], signal.SIGKILL)
    failures = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.post(f"{server.url}/predict", json=SEED_REVIEW, timeout=5).status_code != 200:
                failures += 1
        except requests.ConnectionError:
            failures += 1
        after = server.worker_pids()
        if len(after) == 2 and before[0] not in after:
            break
        time.sleep(0.05)
    after = server.worker_pids()
    assert len(after) == 2 and before[0] not in after and before[1] in after
    assert failures == 0
    assert requests.get(f"{server.url}/readyz", timeout=5).status_code == 200


def test_sigterm_drains_under_load(server_factory) -> None:
    """Readiness turns 503 at once; no request sent before the signal fails; the master exits 0."""
    server: Server = server_factory(workers=2, SHUTDOWN_DELAY="1.5")
    results: list[tuple[float, int | str]] = []
    stop = threading.Event()

    def loop() -> None:
        session = requests.Session()
        for _ in range(5000):  # bounded
            if stop.is_set():
                return
            sent = time.monotonic()
            try:
                status: int | str = session.post(
                    f"{server.url}/predict", json={"reviews": ["great"] * 32}, timeout=10
                ).status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            results.append((sent, status))

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    ready = requests.get(f"{server.url}/readyz", timeout=5)
    assert ready.status_code == 503 and ready.json()["reason"] == "shutting down"
    assert server.process.wait(timeout=30) == 0, server.log()
    stop.set()
    for t in threads:
        t.join(timeout=15)
    before = [status for sent, status in results if sent < signalled]
    assert len(before) > 10
    assert all(status == 200 for status in before), Counter(before)
    during_delay = [status for sent, status in results if signalled + 0.1 < sent < signalled + 1.2]
    assert during_delay and all(status == 200 for status in during_delay), Counter(during_delay)


def test_tampered_model_under_gunicorn_is_alive_but_never_ready(server_factory, model_copy: Path) -> None:
    with (model_copy / "model.skops").open("r+b") as handle:
        handle.seek(64)
        handle.write(b"evil")
    server: Server = server_factory(wait=False, MODEL_PATH=str(model_copy))
    server.wait_ready(path="/healthz")
    for _ in range(10):
        ready = requests.get(f"{server.url}/readyz", timeout=5)
        assert ready.status_code == 503 and "sha256" in ready.json()["reason"]
        time.sleep(0.2)
    answer = requests.post(f"{server.url}/predict", json=SEED_REVIEW, timeout=5)
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "model_not_ready"
    assert "model refused" in server.log()


def test_cli_flags_reach_gunicorn_and_the_workers(tmp_path: Path) -> None:
    from tests.conftest import MODEL_DIR, free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "WORKERS", "MAX_REVIEWS")}
    log = (tmp_path / "cli.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reviewserve.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            "1",
            "--max-reviews",
            "2",
            "--max-review-chars",
            "40",
            "--max-body-bytes",
            "2048",
            "--model-path",
            str(MODEL_DIR),
            "--metrics-dir",
            str(tmp_path / "m"),
        ],
        env=env,
        stdout=log,
        stderr=log,
    )
    server = Server(process, port, tmp_path / "cli.log", tmp_path / "m")
    try:
        server.wait_ready()
        assert len(server.worker_pids()) == 1
        over = requests.post(f"{server.url}/predict", json={"reviews": ["a", "b", "c"]}, timeout=5)
        assert over.status_code == 422 and "limit is 2" in over.json()["error"]["message"]
        long = requests.post(f"{server.url}/predict", json={"review": "x" * 41}, timeout=5)
        assert long.status_code == 413 and long.json()["error"]["code"] == "review_too_long"
        assert "limit is 40" in long.json()["error"]["message"]
        big = requests.post(
            f"{server.url}/predict", data=b" " * 2049, headers={"Content-Type": "application/json"}, timeout=5
        )
        assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"
        fits = requests.post(f"{server.url}/predict", json={"review": "x" * 40}, timeout=5)
        assert fits.status_code == 200
        assert (tmp_path / "m").is_dir() and any((tmp_path / "m").iterdir())
    finally:
        assert server.stop() == 0

"""The metrics folder under a real gunicorn: recycled, killed and timed-out workers are folded while
/metrics is scraped without pause; each server has its own folder and never touches another's."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from reviewserve.web import metricsdir
from tests.conftest import SEED_REVIEW, Server
from tests.promtext import sample

pytestmark = pytest.mark.slow

MONOTONIC_TYPES = ("counter", "histogram", "summary")


def monotonic_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a counter, histogram or summary in an exposition: none of them may ever go down."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        if family.type in MONOTONIC_TYPES
        for s in family.samples
        if not s.name.endswith("_created")
    }


def boots(server: Server) -> int:
    """Workers the master has started so far."""
    return server.log().count("Booting worker with pid")


def server_folder(server: Server) -> Path:
    """The server's own folder under the configured PROMETHEUS_MULTIPROC_DIR."""
    [folder] = [p for p in server.metrics_dir.glob(f"{metricsdir.SERVER_PREFIX}{server.process.pid}-*")]
    return folder


class Load:
    """Keep-alive clients posting reviews until stopped; every request is answered 200 or recorded as failed."""

    def __init__(self, url: str, clients: int) -> None:
        self.url = url
        self.answered = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _loop(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            try:
                response = session.post(f"{self.url}/predict", json=SEED_REVIEW, timeout=30)
                ok = response.status_code == 200
                error = f"HTTP {response.status_code}"
            except requests.RequestException as exc:
                ok, error = False, repr(exc)
            with self._lock:
                if ok:
                    self.answered += 1
                else:
                    self.failures.append(error)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=40)


def test_no_counter_goes_down_while_workers_recycle(server_factory) -> None:
    """Workers recycled every 25 requests under load, /metrics scraped back to back: no sample of a counter,
    histogram or summary ever decreases; the folder does not grow; the final totals are exact."""
    recycles = int(os.environ.get("REVIEWSERVE_SCRAPE_RECYCLES", "60"))
    server: Server = server_factory(workers=2, MAX_REQUESTS="25", MAX_REQUESTS_JITTER="0")
    server.wait_workers(2)
    decreases: list[str] = []
    scrapes = 0
    sizes: list[int] = []
    stop = threading.Event()

    def scraper() -> None:
        nonlocal scrapes
        session = requests.Session()
        previous: dict = {}
        while not stop.is_set():
            now = monotonic_samples(session.get(f"{server.url}/metrics", timeout=30).text)
            for key, value in previous.items():
                if now.get(key, 0.0) < value:
                    decreases.append(f"{key}: {value!r} -> {now.get(key)!r}")
            previous = now
            scrapes += 1
            sizes.append(metricsdir.usage(server.metrics_dir)["files"])

    watcher = threading.Thread(target=scraper, daemon=True)
    load = Load(server.url, clients=4)
    watcher.start()
    deadline = time.monotonic() + 300
    try:
        while boots(server) < recycles + 2:
            assert time.monotonic() < deadline, f"only {boots(server) - 2} recycles in 300 s"
            time.sleep(0.2)
    finally:
        load.stop()
        stop.set()
        watcher.join(timeout=40)
    assert not load.failures, load.failures[:5]
    assert not decreases, decreases[:5]
    assert scrapes > 50, f"only {scrapes} scrapes"
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    # the readiness wait's GET /readyz is counted too: count POSTs
    assert sample(text, "flask_http_request_total", method="POST") == load.answered
    assert sample(text, "reviewserve_predictions_total") == load.answered
    assert sample(text, "reviewserve_request_reviews_count") == load.answered
    # 2 live workers x 3 files (+3 of a replacement booting) + the master's 3 + 2 archives + 3 lock files
    assert max(sizes) <= 3 * 3 + 3 + 2 + 3, f"the folder grew: up to {max(sizes)} files"


def test_killed_and_timed_out_workers_are_folded(server_factory) -> None:
    """kill -9 of one worker, a timeout abort of the other: both are folded, totals stay exact."""
    server: Server = server_factory(workers=2, TIMEOUT="2", MAX_REQUESTS="0")
    first = server.wait_workers(2)
    folder = server_folder(server)
    sent = 0
    # <=: the master has counter files of its own (the shed counters are created at import, before the fork)
    while not set(first) <= {int(p.stem.rsplit("_", 1)[1]) for p in folder.glob("counter_[0-9]*.db")}:
        assert sent < 2000, "one worker answered everything"
        with ThreadPoolExecutor(8) as pool:  # concurrent clients: both workers answer some
            statuses = list(
                pool.map(
                    lambda _: requests.post(f"{server.url}/predict", json=SEED_REVIEW, timeout=10).status_code,
                    range(40),
                )
            )
        assert statuses == [200] * 40
        sent += 40
    os.kill(first[0], signal.SIGKILL)
    os.kill(first[1], signal.SIGSTOP)  # no heartbeat: the master aborts it after TIMEOUT
    deadline = time.monotonic() + 60
    while set(server.worker_pids()) & set(first) or len(server.worker_pids()) < 2:
        assert time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.1)
    left = [p.name for p in folder.glob("*.db") if p.stem.rsplit("_", 1)[1] in {str(pid) for pid in first}]
    assert left == [], f"files of exited workers remain: {left}"
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    assert sample(text, "flask_http_request_total", method="POST") == sent
    assert sample(text, "reviewserve_predictions_total", label="positive") == sent
    assert requests.post(f"{server.url}/predict", json=SEED_REVIEW, timeout=10).status_code == 200
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    assert sample(text, "flask_http_request_total", method="POST") == sent + 1


def test_two_servers_on_one_folder_each_count_their_own(server_factory, tmp_path: Path) -> None:
    """Two servers on two ports with the same PROMETHEUS_MULTIPROC_DIR; a third that cannot bind changes nothing."""
    shared = tmp_path / "shared-metrics"
    one: Server = server_factory(workers=2, PROMETHEUS_MULTIPROC_DIR=str(shared))
    two: Server = server_factory(workers=1, PROMETHEUS_MULTIPROC_DIR=str(shared))
    for server, n in ((one, 3), (two, 5)):
        for _ in range(n):
            assert requests.post(f"{server.url}/predict", json=SEED_REVIEW, timeout=10).status_code == 200
    for server, n in ((one, 3), (two, 5)):
        text = requests.get(f"{server.url}/metrics", timeout=10).text
        assert sample(text, "flask_http_request_total", method="POST") == n, text
        assert sample(text, "reviewserve_predictions_total", label="positive") == n

    # `make run` while one is already serving on that port: binding fails, the first server's metrics stay.
    third: Server = server_factory(workers=1, wait=False, PORT=str(one.port), PROMETHEUS_MULTIPROC_DIR=str(shared))
    assert third.process.wait(timeout=60) != 0
    assert "Address already in use" in third.log() or "Connection in use" in third.log(), third.log()[-2000:]
    assert requests.post(f"{one.url}/predict", json=SEED_REVIEW, timeout=10).status_code == 200
    text = requests.get(f"{one.url}/metrics", timeout=10).text
    assert sample(text, "flask_http_request_total", method="POST") == 4, text
    assert sample(text, "reviewserve_predictions_total", label="positive") == 4
    assert sorted(p.name.split("-")[1] for p in shared.glob("server-*")) == sorted(
        [str(one.process.pid), str(two.process.pid)]
    ), "the server that could not bind left its folder behind"

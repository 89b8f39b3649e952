"""Load for the overload tests: closed-loop clients, an open-loop generator and a prober, all over real HTTP.

Plain threads and ``http.client`` keep-alive connections: enough to saturate one or two workers with large
lists, or to offer a fixed arrival rate of medium requests (a request's latency counts from its scheduled
time, so a late client shows as latency, as in any open-loop generator).
"""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

TEXT = (
    "the battery lasts all day and the screen is bright but the speaker crackles at high volume "
    "customer service answered quickly and replaced the charger without any fuss great value overall "
    "terrible packaging arrived scratched yet it works fine would buy again for my parents"
)
WORDS = TEXT.split()


def review(chars: int, seed: int = 0) -> str:
    """A review of about ``chars`` characters (never more)."""
    out: list[str] = []
    size, i = 0, seed
    while True:
        word = WORDS[i % len(WORDS)]
        if size + len(word) + 1 > chars:
            return " ".join(out)
        out.append(word)
        size += len(word) + 1
        i += 7


def list_body(reviews: int, chars: int) -> bytes:
    """A ``{"reviews": [...]}`` body of ``reviews`` texts of about ``chars`` characters."""
    return json.dumps({"reviews": [review(chars, seed) for seed in range(reviews)]}).encode()


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` (nearest rank); inf when empty."""
    if not values:
        return float("inf")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Answer:
    status: int  # 0: socket error
    seconds: float
    code: str = ""  # error.code of a JSON error body
    retry_after: str | None = None


def _connection(url: str, timeout: float) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def post(conn: http.client.HTTPConnection, path: str, body: bytes, started: float) -> Answer:
    """POST ``body`` on a kept-alive connection; the answer, timed from ``started``."""
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    seconds = time.perf_counter() - started
    code = ""
    if resp.status >= 400:
        error = json.loads(data)["error"]
        code = error["code"] if isinstance(error, dict) else ""
    answer = Answer(resp.status, seconds, code, resp.getheader("Retry-After"))
    if resp.getheader("Connection", "").lower() == "close":
        conn.close()
    return answer


@dataclass
class ClosedLoop:
    """``clients`` threads, each sending ``body`` again and again on its own connection until stopped."""

    url: str
    body: bytes
    clients: int
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _run(self) -> None:
        conn = _connection(self.url, 60)
        while not self._stop.is_set():
            try:
                self.answers.append(post(conn, "/predict", self.body, time.perf_counter()))
            except (OSError, http.client.HTTPException):
                self.answers.append(Answer(0, 0.0))
                conn.close()
                conn = _connection(self.url, 60)
        conn.close()

    def __enter__(self) -> ClosedLoop:
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def open_loop(url: str, body: bytes, rate: float, seconds: float, connections: int = 64) -> list[Answer]:
    """Offer ``rate`` requests per second for ``seconds`` (fixed arrival times) over a pool of connections."""
    due: queue.Queue[float | None] = queue.Queue()
    answers: list[Answer] = []

    def sender() -> None:
        conn = _connection(url, 30)
        while (scheduled := due.get()) is not None:
            try:
                answers.append(post(conn, "/predict", body, scheduled))
            except (OSError, http.client.HTTPException):
                answers.append(Answer(0, time.perf_counter() - scheduled))
                conn.close()
                conn = _connection(url, 30)
        conn.close()

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        scheduled = start + i / rate
        pause = scheduled - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        due.put(scheduled)
    for _ in threads:
        due.put(None)
    for thread in threads:
        thread.join(timeout=60)
    return answers


@dataclass
class Prober:
    """GETs ``paths`` on ``base`` every ``period`` seconds in a thread, a new connection each (as the kubelet)."""

    base: str
    paths: tuple[str, ...] = ("/healthz", "/readyz")
    period: float = 0.05
    timeout: float = 10.0
    results: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            for path in self.paths:
                started = time.perf_counter()
                conn = _connection(self.base, self.timeout)
                try:
                    conn.request("GET", path)
                    resp = conn.getresponse()
                    resp.read()
                    status = resp.status
                except (OSError, http.client.HTTPException):
                    status = 0
                finally:
                    conn.close()
                self.results.setdefault(path, []).append((status, time.perf_counter() - started))
            self._stop.wait(self.period)

    def __enter__(self) -> Prober:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def statuses(self, path: str) -> list[int]:
        return [status for status, _ in self.results.get(path, [])]

    def latencies(self, path: str) -> list[float]:
        return [seconds for _, seconds in self.results.get(path, [])]

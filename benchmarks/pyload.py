"""A closed-loop Python load client that accounts for every request it sends.

One keep-alive ``http.client`` connection per thread (as a proxy's upstream pool). Each request sent
is answered (status counted) or fails (socket error or timeout, counted by type, connection
replaced); threads finish their last request, so nothing is left in flight when it returns.
wrk measures latency better; this is for runs whose point is that no request is lost.
"""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from benchmarks.inprocess import percentile

# (kind, path, body, expected status, reviews scored when answered 200)
Request = tuple[str, str, str, int, int]


@dataclass
class Tally:
    """What the client saw."""

    sent: int = 0
    answered: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_kind_status: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    socket_errors: Counter[str] = field(default_factory=Counter)
    reviews_scored: int = 0
    ok_prediction_requests: int = 0
    latencies: list[float] = field(default_factory=list)
    window: list[float] = field(default_factory=list)  # latencies since the last take_window()
    elapsed: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take_window(self) -> list[float]:
        """The latencies (seconds) of the requests answered since the last call."""
        with self.lock:
            window, self.window = self.window, []
        return window

    def summary(self) -> dict:
        """JSON-ready figures."""
        lat = self.latencies
        return {
            "sent": self.sent,
            "answered": self.answered,
            "rps": self.answered / self.elapsed if self.elapsed else 0.0,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_kind_status": dict(sorted(self.by_kind_status.items())),
            "5xx": sum(n for s, n in self.by_status.items() if s >= 500),
            "socket_errors": sum(self.socket_errors.values()),
            "socket_error_kinds": dict(self.socket_errors),
            "unexpected": dict(self.unexpected),
            "failed": sum(self.socket_errors.values()) + sum(self.unexpected.values()),
            "p50_ms": statistics.median(lat) * 1000 if lat else 0.0,
            "p99_ms": percentile(lat, 99) * 1000 if lat else 0.0,
            "max_ms": max(lat) * 1000 if lat else 0.0,
            "reviews_scored": self.reviews_scored,
            "ok_prediction_requests": self.ok_prediction_requests,
        }


def _client(host: str, port: int, plan: list[Request], offset: int, deadline: float, timeout: float, tally: Tally):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    i = offset
    latencies: list[float] = []
    while time.monotonic() < deadline:
        kind, path, body, expected, reviews = plan[i % len(plan)]
        i += 1
        with tally.lock:
            tally.sent += 1
        started = time.perf_counter()
        try:
            conn.request("POST", path, body=body.encode(), headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            with tally.lock:
                tally.socket_errors[type(exc).__name__] += 1
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
            continue
        latency = time.perf_counter() - started
        latencies.append(latency)
        with tally.lock:
            tally.window.append(latency)
            tally.answered += 1
            tally.by_status[response.status] += 1
            tally.by_kind_status[f"{kind} {response.status}"] += 1
            if response.status != expected:
                tally.unexpected[f"{kind}: {response.status} (expected {expected})"] += 1
            if response.status == 200:
                tally.reviews_scored += reviews
                tally.ok_prediction_requests += 1
        if (response.getheader("Connection") or "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.close()
    with tally.lock:
        tally.latencies.extend(latencies)


def start_load(
    host: str, port: int, plan: list[Request], connections: int, seconds: float, timeout: float = 30.0
) -> tuple[Tally, list[threading.Thread]]:
    """Start ``connections`` client threads for ``seconds``; join the threads, then read the tally."""
    tally = Tally()
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=_client, args=(host, port, plan, k * 7, deadline, timeout, tally), daemon=True)
        for k in range(connections)
    ]
    tally.elapsed = seconds  # corrected by run_load / the caller once joined
    for thread in threads:
        thread.start()
    return tally, threads


def run_load(host: str, port: int, plan: list[Request], connections: int, seconds: float, timeout: float = 30.0):
    """Run the load to the end and return its tally."""
    started = time.monotonic()
    tally, threads = start_load(host, port, plan, connections, seconds, timeout)
    for thread in threads:
        thread.join()
    tally.elapsed = time.monotonic() - started
    return tally

"""An open-loop HTTP/1.1 load generator: requests leave on a fixed schedule, whatever the server does.

    python -m benchmarks.openloop --url http://127.0.0.1:9696 --bodies bodies.json \
        --schedule 1000:30:1.0x,2000:30:2x --out result.json

Closed-loop tools (wrk, c clients each waiting for its answer) slow down with the server they
measure, so they can never offer more than the server takes. Here request ``i`` of a phase of
``rate`` requests/s is due at ``start + i / rate``; it goes out on an idle keep-alive connection,
or on a new one when all are busy (up to ``--max-connections``; beyond that it is counted
``unsent``). Latency is measured from the due time, not from the send, so time spent waiting for a
connection counts (no coordinated omission). Every request is accounted for: answered (status and
whether its body is the shed error), a socket error (refused, reset, closed), or a timeout.

asyncio Protocols (not streams) keep the cost per request low. Two clocks send the requests:

- ``tick`` (the default, what every published run used): every millisecond (the event loop's waits are
  whole milliseconds), the requests that have fallen due leave together. Each is up to ~1 ms late, and its
  latency, counted from its due time, includes that (generator lag p99 ~1.8 ms).
- ``timerfd``: each request leaves at its due time, to the microsecond (a timerfd wakes the loop:
  :mod:`benchmarks.timerfd`); lag p99 ~0.2 ms. On this project's 2-vCPU machine the server served 3-4
  points less goodput under it than under ``tick`` (an A/B, docs/benchmarking.md, "The generator's clock"),
  so the published runs keep ``tick``.

The generator's own lag (due time to actual write) is reported so a run where it fell behind is visible.
So are its stalls: each time requests left more than ``STALL_S`` after their due time (the process did not
run: another task on its CPU, the VM), ``stalls`` has when and how late. The requests it then sent in a burst
queue at the server, and their latency, counted from the due time, is the generator's doing, not the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import click

from benchmarks.timerfd import Timerfd

REAP_SECONDS = 0.1  # how often requests in flight are checked against the timeout
CLOCKS = ("tick", "timerfd")  # how requests are sent on time (see the module doc)
SHED_MARK = b'"overloaded"'  # the shed answer's JSON error code (503, "code": "overloaded")
# Requests that leave this late mean the generator stalled: with tick its lag p99 is ~1.8 ms, and on a quiet machine
# it reaches 5-8 ms a dozen times per 30 s at 1.0x (make bench-overload, 2026-12-07 12:06), too little to count.
STALL_S = 0.010


@dataclass
class Phase:
    """A stretch of the run at one arrival rate."""

    label: str
    rate: float  # requests per second
    seconds: float

    @property
    def requests(self) -> int:
        """How many requests the phase offers (request i due at i / rate)."""
        return int(self.rate * self.seconds)


@dataclass
class Records:
    """Per-request outcomes, in columns (cheap to append, JSON-ready)."""

    phase: list[int] = field(default_factory=list)
    due: list[float] = field(default_factory=list)  # seconds since the run started
    latency: list[float] = field(default_factory=list)  # seconds from due to the end of the answer
    status: list[int] = field(default_factory=list)  # HTTP status, 0 = socket error, -1 = timeout, -2 = unsent
    shed: list[bool] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)  # due -> written, seconds (the generator's own delay)
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, phase: int, due: float, latency: float, status: int, shed: bool, lag: float) -> None:
        """Record one request's outcome."""
        self.phase.append(phase)
        self.due.append(due)
        self.latency.append(latency)
        self.status.append(status)
        self.shed.append(shed)
        self.lag.append(lag)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request in flight; parses Content-Length or chunked answers."""

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.current: tuple[int, float, float] | None = None  # (phase, due, written)
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes, phase: int, due: float) -> None:
        self.current = (phase, due, time.perf_counter())
        self.buffer.clear()
        assert self.transport is not None
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.current is None:
            return
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(self.buffer[:head_end]).lower()
        body_start = head_end + 4
        length = -1
        chunked = b"transfer-encoding: chunked" in head
        for line in head.split(b"\r\n")[1:]:
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if chunked:
            end = self.buffer.find(b"0\r\n\r\n", body_start)
            if end < 0:
                return
            body = bytes(self.buffer[body_start:end])
        elif length >= 0:
            if len(self.buffer) < body_start + length:
                return
            body = bytes(self.buffer[body_start : body_start + length])
        else:
            return  # read until close: finished in connection_lost
        status = int(head[9:12])
        close = b"connection: close" in head
        self._finish(status, body)
        if close:
            self._close()
        else:
            self.gen.idle.append(self)

    def _finish(self, status: int, body: bytes) -> None:
        phase, due, written = self.current  # type: ignore[misc]
        self.current = None
        self.gen.done(phase, due, written, status, status == 503 and SHED_MARK in body)

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self.gen.open_connections -= 1
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.current is not None:
            self.gen.error(type(exc).__name__ if exc else "ClosedByServer")
            phase, due, written = self.current
            self.current = None
            self.gen.done(phase, due, written, 0, False)
        if not self.closed:
            self.closed = True
            self.gen.open_connections -= 1
        with contextlib.suppress(ValueError):
            self.gen.idle.remove(self)

    def timed_out(self) -> None:
        """The answer took longer than the timeout: count it, drop the connection."""
        if self.current is not None:
            phase, due, written = self.current
            self.current = None
            self.gen.error("Timeout")
            self.gen.done(phase, due, written, -1, False)
        self._close()


class Generator:
    """Sends the schedule's requests on time over a pool of keep-alive connections."""

    def __init__(self, url: str, requests: list[bytes], max_connections: int, timeout: float) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.requests = requests
        self.max_connections = max_connections
        self.timeout = timeout
        self.idle: deque[_Connection] = deque()
        self.busy: set[_Connection] = set()
        self.open_connections = 0
        self.peak_connections = 0
        self.records = Records()
        self.t0 = 0.0
        self.next_request = 0
        self.phase_cpu: list[float] = []  # the generator's own CPU seconds per phase (it shares the machine)
        self.last_reap = 0.0  # when requests in flight were last checked against the timeout (perf_counter)
        self.stalls: list[list[float]] = []  # [due of the first late request (s since t0), how late (s)]

    def error(self, kind: str) -> None:
        """Count a socket error by kind."""
        self.records.errors[kind] = self.records.errors.get(kind, 0) + 1

    def done(self, phase: int, due: float, written: float, status: int, shed: bool) -> None:
        """Record one finished request (answered or failed)."""
        now = time.perf_counter()
        self.records.add(phase, due - self.t0, now - due, status, shed, max(0.0, written - due))

    async def _open_and_send(self, request: bytes, phase: int, due: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self), self.host, self.port), self.timeout
            )
        except (TimeoutError, OSError) as exc:
            self.open_connections -= 1
            self.error(f"connect {type(exc).__name__}")
            self.records.add(phase, due - self.t0, time.perf_counter() - due, 0, False, 0.0)
            return
        self._send(conn, request, phase, due)

    def _send(self, conn: _Connection, request: bytes, phase: int, due: float) -> None:
        conn.send(request, phase, due)
        self.busy.add(conn)

    def _dispatch(self, phase: int, due: float) -> None:
        request = self.requests[self.next_request % len(self.requests)]
        self.next_request += 1
        while self.idle:
            conn = self.idle.popleft()
            if not conn.closed:
                self._send(conn, request, phase, due)
                return
        if self.open_connections >= self.max_connections:
            self.records.add(phase, due - self.t0, 0.0, -2, False, 0.0)
            return
        self.open_connections += 1
        self.peak_connections = max(self.peak_connections, self.open_connections)
        asyncio.get_running_loop().create_task(self._open_and_send(request, phase, due))

    def _send_due(self, index: int, phase: Phase, start: float, sent: int) -> int:
        """Send the phase's requests that have fallen due since ``sent`` of them left; return how many have left.

        Now and then (every ``REAP_SECONDS``) also times out the requests in flight for too long.
        """
        now = time.perf_counter()
        due_count = _due_count(now - start, phase.rate, phase.requests)
        first_due = start + sent / phase.rate
        if sent < due_count and now - first_due > STALL_S:
            self.stalls.append([round(first_due - self.t0, 4), round(now - first_due, 5)])
        while sent < due_count:
            self._dispatch(index, start + sent / phase.rate)
            sent += 1
        if now - self.last_reap > REAP_SECONDS:
            self._reap()
            self.last_reap = now
        return sent

    async def _offer_on_ticks(self, index: int, phase: Phase, start: float, tick: float = 0.001) -> None:
        """Send a phase's requests: every ``tick`` (at least 1 ms: the loop's waits), what has fallen due."""
        sent = 0
        while sent < phase.requests:
            sent = self._send_due(index, phase, start, sent)
            await asyncio.sleep(tick)

    async def _offer(self, timer: Timerfd, index: int, phase: Phase, start: float) -> None:
        """Send a phase's requests, each at its due time: the timer wakes the loop for the next one.

        Not ``asyncio.sleep``: the loop's waits are whole milliseconds (see :mod:`benchmarks.timerfd`).
        """
        loop = asyncio.get_running_loop()
        finished = loop.create_future()
        sent = 0

        def on_time() -> None:
            nonlocal sent
            timer.clear()
            sent = self._send_due(index, phase, start, sent)
            if sent >= phase.requests:
                if not finished.done():
                    finished.set_result(None)
                return
            timer.set_at(min(start + sent / phase.rate, self.last_reap + REAP_SECONDS))

        loop.add_reader(timer.fileno(), on_time)
        try:
            on_time()
            await finished
        finally:
            loop.remove_reader(timer.fileno())

    def _reap(self) -> None:
        """Time out requests in flight for longer than the timeout; forget finished connections."""
        now = time.perf_counter()
        for conn in list(self.busy):
            if conn.current is None:
                self.busy.discard(conn)
            elif now - conn.current[1] > self.timeout:
                self.busy.discard(conn)
                conn.timed_out()

    async def run(self, phases: list[Phase], clock: str = "tick") -> None:
        """Offer every phase in turn, then wait (at most the timeout) for the answers still due.

        ``clock``: ``tick`` sends what is due every millisecond; ``timerfd`` sends each request at its due time.
        """
        if clock not in CLOCKS:
            raise ValueError(f"clock must be one of {CLOCKS}, not {clock!r}")
        self.t0 = self.t0 or time.perf_counter()
        start = time.perf_counter()
        with Timerfd() if clock == "timerfd" else contextlib.nullcontext() as timer:
            for index, phase in enumerate(phases):
                cpu_start = time.process_time()
                if timer is None:
                    await self._offer_on_ticks(index, phase, start)
                else:
                    await self._offer(timer, index, phase, start)
                start += phase.seconds
                self.phase_cpu.append(time.process_time() - cpu_start)
        # the requests still in flight: answered, or timed out
        deadline = time.perf_counter() + self.timeout + 1
        while time.perf_counter() < deadline and any(c.current is not None for c in self.busy):
            self._reap()
            await asyncio.sleep(0.05)
        self._reap()
        for conn in list(self.idle) + list(self.busy):
            conn._close()


def _due_count(elapsed: float, rate: float, total: int) -> int:
    """How many of a phase's ``total`` requests are due ``elapsed`` seconds after its start (request i at i/rate).

    ``floor``, not ``int``: before the phase starts (``elapsed`` < 0, right after the previous phase's last
    request) ``int`` rounds up to 0 and would send the first request early.
    """
    return max(0, min(total, math.floor(elapsed * rate) + 1))


def build_requests(url: str, bodies: list[str], path: str, host_header: str | None = None) -> list[bytes]:
    """Pre-encoded keep-alive POST requests, one per body."""
    host = host_header or urlsplit(url).netloc
    out = []
    for body in bodies:
        data = body.encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        out.append(head.encode() + data)
    return out


def parse_schedule(text: str) -> list[Phase]:
    """``rate:seconds:label,...`` -> phases."""
    phases = []
    for item in text.split(","):
        rate, seconds, label = item.split(":", 2)
        phases.append(Phase(label, float(rate), float(seconds)))
    return phases


async def _main(
    url: str,
    requests: list[bytes],
    phases: list[Phase],
    max_connections: int,
    timeout: float,
    clock: str,
) -> dict:
    gen = Generator(url, requests, max_connections, timeout)
    t0_epoch = time.time()
    gen.t0 = time.perf_counter()
    await gen.run(phases, clock)
    wall = time.perf_counter() - gen.t0
    r = gen.records
    return {
        "t0_epoch": t0_epoch,
        "phases": [{"label": p.label, "rate": p.rate, "seconds": p.seconds} for p in phases],
        "clock": clock,
        "wall_s": wall,
        "peak_connections": gen.peak_connections,
        "phase_cpu_s": [round(x, 3) for x in gen.phase_cpu],
        "stalls": gen.stalls,
        "errors": r.errors,
        "records": {
            "phase": r.phase,
            "due": [round(x, 5) for x in r.due],
            "latency": [round(x, 6) for x in r.latency],
            "status": r.status,
            "shed": [int(x) for x in r.shed],
            "lag": [round(x, 5) for x in r.lag],
        },
    }


def run(
    url: str,
    path: str,
    bodies: list[str],
    phases: list[Phase],
    max_connections: int = 4000,
    timeout: float = 10.0,
    host_header: str | None = None,
    clock: str = "tick",
) -> dict:
    """Offer ``phases`` to ``url + path`` (bodies in turn); return the raw records (see the module doc)."""
    requests = build_requests(url, bodies, path, host_header)
    return asyncio.run(_main(url, requests, phases, max_connections, timeout, clock))


@click.command(help=__doc__)
@click.option("--url", required=True, help="scheme://host:port of the server.")
@click.option("--path", default="/predict", show_default=True)
@click.option("--bodies", type=click.Path(exists=True, path_type=Path), required=True, help="JSON list of bodies.")
@click.option("--schedule", required=True, help="rate:seconds:label,... (requests/s, seconds, a name).")
@click.option("--max-connections", type=int, default=4000, show_default=True)
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds before a request fails.")
@click.option("--host-header", default=None, help="Host header (default: the URL's host:port).")
@click.option(
    "--clock", type=click.Choice(CLOCKS), default="tick", show_default=True,
    help="tick: what is due leaves every 1 ms; timerfd: each request at its due time (see the module doc).",
)  # fmt: skip
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Where the raw JSON goes.")
def main(
    url: str, path: str, bodies: Path, schedule: str, max_connections: int, timeout: float,
    host_header: str | None, clock: str, out: Path,
) -> None:  # fmt: skip
    """Run one open-loop schedule and write its raw records."""
    phases = parse_schedule(schedule)
    data = run(url, path, json.loads(bodies.read_text()), phases, max_connections, timeout, host_header, clock)
    out.write_text(json.dumps(data))


if __name__ == "__main__":
    main()

"""Slow HTTP clients held open against a server: trickled headers, trickled bodies, idle keep-alive.

One background thread owns every socket and, once per ``interval``, sends each trickling socket its
next line (headers) or byte (body). A socket the server closes (EOF, reset, or an error response)
is recorded with how long it had been open. Used by ``benchmarks/slow_clients.py`` and by the
integration tests.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

HEADERS = "headers"  # request line, then one header line per interval, never the blank line
BODY = "body"  # full headers with Content-Length, then one body byte per interval
IDLE = "idle"  # one complete request (its response read when it comes), then nothing: idle keep-alive


@dataclass
class Conn:
    """One slow connection and what happened to it."""

    kind: str
    sock: socket.socket
    opened: float
    sent: int = 0
    closed_after: float | None = None  # seconds from open to the server closing it
    first_reply: bytes = b""


@dataclass
class SlowClients:
    """Hold ``headers`` + ``body`` + ``idle`` slow connections open against ``host:port``."""

    host: str
    port: int
    headers: int = 0
    body: int = 0
    idle: int = 0
    interval: float = 1.0
    path: str = "/predict"
    body_length: int = 100_000  # announced Content-Length of trickled bodies (never reached)
    reconnect: bool = False  # replace a connection the server closes with a new one of its kind (an attacker would)
    conns: list[Conn] = field(default_factory=list)
    connect_failures: int = 0
    reopened: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _reopen: list[str] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def _open(self, kind: str) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=5)
        except OSError:
            self.connect_failures += 1
            return
        conn = Conn(kind, sock, time.monotonic())
        try:
            if kind == HEADERS:
                sock.sendall(f"POST {self.path} HTTP/1.1\r\n".encode())
            elif kind == BODY:
                sock.sendall(
                    f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {self.body_length}\r\n\r\n".encode()
                )
            else:
                body = b'{"review": "This Chatbot is amazing"}'
                sock.sendall(
                    f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )  # its response is read by the trickling loop: a blocked server must not block us here
        except OSError:
            conn.closed_after = 0.0
        sock.setblocking(False)
        self.conns.append(conn)

    def start(self) -> SlowClients:
        """Open every connection (in kind order, interleaved) and start trickling."""
        kinds = [HEADERS] * self.headers + [BODY] * self.body + [IDLE] * self.idle
        # interleave kinds so a partial start still holds some of each
        order = sorted(range(len(kinds)), key=lambda i: (i % max(1, len(kinds) // 3 or 1), i))
        for i in order:
            self._open(kinds[i])
        self._thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)
        self._thread.start()
        return self

    def _closed(self, conn: Conn, now: float) -> None:
        if conn.closed_after is None:
            conn.closed_after = now - conn.opened
            if self.reconnect and not self._stop.is_set():
                self._reopen.append(conn.kind)
        with contextlib.suppress(OSError):
            conn.sock.close()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        for conn in self.conns:
            if conn.closed_after is None:
                selector.register(conn.sock, selectors.EVENT_READ, conn)
        next_tick = time.monotonic() + self.interval
        while not self._stop.is_set():
            timeout = max(0.0, next_tick - time.monotonic())
            for key, _ in selector.select(timeout=min(timeout, 0.2)):
                conn = key.data
                try:
                    data = conn.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    conn.first_reply = conn.first_reply or data[:200]
                    if conn.kind != IDLE:  # an answer to a request we never finished: the server gave up
                        selector.unregister(conn.sock)
                        self._closed(conn, time.monotonic())
                    continue
                selector.unregister(conn.sock)
                self._closed(conn, time.monotonic())
            while self._reopen:
                opened = len(self.conns)
                self._open(self._reopen.pop())
                conn = self.conns[-1]
                if len(self.conns) > opened and conn.closed_after is None:
                    selector.register(conn.sock, selectors.EVENT_READ, conn)
                    self.reopened += 1
            now = time.monotonic()
            if now < next_tick:
                continue
            next_tick = now + self.interval
            for conn in self.conns:
                if conn.closed_after is not None or conn.kind == IDLE:
                    continue
                chunk = f"X-Slow-{conn.sent}: a\r\n".encode() if conn.kind == HEADERS else b" "
                try:
                    conn.sock.send(chunk)
                    conn.sent += 1
                except BlockingIOError:
                    pass
                except OSError:
                    with contextlib.suppress(KeyError, ValueError):
                        selector.unregister(conn.sock)
                    self._closed(conn, now)
        selector.close()

    def open_count(self) -> int:
        """Connections the server has not closed."""
        return sum(c.closed_after is None for c in self.conns)

    def closed_by_kind(self) -> dict[str, int]:
        """How many connections of each kind the server closed (reopened ones included)."""
        out = {HEADERS: 0, BODY: 0, IDLE: 0}
        for conn in self.conns:
            out[conn.kind] += conn.closed_after is not None
        return out

    def idle_answered(self) -> int:
        """Idle keep-alive connections whose one request was answered 200."""
        return sum(c.kind == IDLE and c.first_reply.startswith(b"HTTP/1.1 200") for c in self.conns)

    def stop(self) -> None:
        """Stop trickling and close every socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.sock.close()

    def __enter__(self) -> SlowClients:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stall_close_seconds(
    host: str, port: int, limit: float, partial: bytes = b"POST /predict HTTP/1.1\r\n"
) -> float | None:
    """Open a connection, send ``partial`` (may be empty), then nothing: seconds until the server closes it.

    Returns None when it is still open after ``limit`` seconds.
    """
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=5) as sock:
        if partial:
            sock.sendall(partial)
        while True:
            left = limit - (time.monotonic() - started)
            if left <= 0:
                return None
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                return None
            except OSError:
                return time.monotonic() - started
            if not data:
                return time.monotonic() - started
            # an error response (e.g. 408) is followed by the close; keep reading until EOF

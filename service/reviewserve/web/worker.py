"""The gunicorn worker: gunicorn's gevent worker, tuned for a CPU-bound model behind keep-alive clients.

Why gevent: a connection costs a greenlet, not a thread, so slow clients (headers or bodies trickled in,
idle keep-alive) wait in the event loop without blocking anyone; the CPU-bound prediction runs one
request at a time per worker, which is all a core can do anyway. What this class adds to
:class:`gunicorn.workers.ggevent.GeventWorker`, each measured by ``make bench`` / ``make bench-slow``:

- **One segment per response.** Headers and body leave in one send (see :class:`_OneSegmentSocket`).
- **Turns.** A gevent socket read that finds the next request already waiting does not yield, so one busy
  keep-alive connection could be served again and again while the others wait: after each request the
  connection waits for the next poll of the sockets (a timer, not ``sleep(0)``; see ``handle_request``).
- **Stall limit.** A connection that sends nothing for ``KEEPALIVE`` seconds is closed, idle or in the middle
  of a request (socket timeout); request headers must arrive within ``KEEPALIVE`` seconds (gunicorn's).
- **Even spread.** A worker holding more than its fair share of the active kept-alive connections (a request
  answered in the last second; idle and trickling ones do not count) stops accepting
  and closes the excess after their current response (:mod:`reviewserve.web.balance`): after a worker is
  recycled its clients do not stay piled on the surviving worker while the new one idles. A connection is
  also closed after ``KEEPALIVE_REQUESTS`` requests, as nginx does.
- **Shedding.** A POST joins the line once its body has arrived (a body still trickling in is not work waiting)
  and waits there (:mod:`reviewserve.web.admission`) until the connections with a request
  ready ahead of it have been served; one arriving while more than ``MAX_QUEUE_MS`` of estimated work waits is
  answered 503 ``overloaded`` with ``Retry-After`` at once, its body unread (:mod:`reviewserve.web.shedding`).
  A request whose client closed the connection while it waited is dropped unscored. GET (probes, metrics) never
  waits in line. Each request's first bytes are looked at when they arrive, before gunicorn parses them: if the
  worker is over budget then, a whole simple POST is shed from its raw bytes (:mod:`reviewserve.web.rawshed`),
  at a fraction of the CPU of a shed through gunicorn's parser (docs/benchmarking.md, "What a shed costs").
- **Quick exit.** A stopping worker (recycled after ``MAX_REQUESTS``, or SIGTERM) stops accepting at once,
  closes each busy connection after its current response, and gives its connections a moment (0.5 s when
  recycled, gunicorn's 2 s on SIGTERM; a request arriving meanwhile is answered with ``Connection: close``).
  Then every connection still waiting on its client (idle, a request still trickling in, a response not
  being read) is closed and the worker exits, instead of polling once a second and waiting out
  ``GRACEFUL_TIMEOUT`` for slow clients while its replacement is not yet started.
"""

from __future__ import annotations

import logging
import os
import select
import sys
import time
from collections import deque
from functools import partial
from typing import Any

import gevent
from gevent.hub import Waiter, get_hub
from gevent.pool import Pool
from gevent.server import StreamServer
from gunicorn import http as gunicorn_http
from gunicorn.workers.base_async import AsyncWorker
from gunicorn.workers.ggevent import GeventWorker
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER

from reviewserve.settings import get_settings
from reviewserve.web import shedding
from reviewserve.web.admission import AdmissionQueue
from reviewserve.web.balance import ConnectionBalancer
from reviewserve.web.rawshed import ShedFirstParser
from reviewserve.web.requestlog import valid_request_id

TURN_SECONDS = 1e-6  # any timer: it fires after the next poll of the sockets
POLL_SECONDS = 0.05  # how soon a stopping worker notices that it should stop, and that it is done
# A connection counts towards a worker's share (the balancer) while it has sent a request this recently:
# idle and trickling connections would otherwise push every real client off the worker that holds them.
ACTIVE_SECONDS = 1.0
# Idle kept-alive connections of a recycled worker get this long for a request already on its way; the
# replacement worker is forked only once this one has exited, so the wait is kept short.
RECYCLE_LINGER_SECONDS = 0.5


class _KeepaliveWait(gevent.Timeout):
    """gunicorn's wait for the next request on a connection, registered so a stopping worker can end it.

    The parser may shed requests inside this wait (:mod:`reviewserve.web.rawshed`); a connection answered
    meanwhile was not silent, so on expiry the wait goes on from its last answer instead of closing it. That
    check runs once per expiry, not once per shed.
    """

    def __init__(self, waiting: dict[Any, _KeepaliveWait], answered: dict[Any, float], seconds: float) -> None:
        super().__init__(seconds, False)  # False: on expiry the with-block ends quietly, no request
        self._waiting = waiting
        self._answered = answered  # greenlet -> when it last had a request answered (monotonic)

    def __enter__(self) -> _KeepaliveWait:
        self._waiting[gevent.getcurrent()] = self
        return super().__enter__()

    def __exit__(self, typ: Any, value: Any, tb: Any) -> bool | None:
        self._waiting.pop(gevent.getcurrent(), None)
        return super().__exit__(typ, value, tb)

    def _on_expiration(self, prev_greenlet: Any, ex: Any) -> None:
        remaining = self._answered.get(prev_greenlet, float("-inf")) + self.seconds - time.monotonic()
        if remaining > 0:  # answered (shed) during the wait: silent for less than KEEPALIVE seconds
            self.timer.close()
            self.timer = get_hub().loop.timer(remaining)
            # update: the loop's clock is as old as this iteration, which may have scored a large list since
            self.timer.start(self._on_expiration, prev_greenlet, ex, update=True)
            return
        super()._on_expiration(prev_greenlet, ex)


class _Line:
    """Admitted requests waiting for their turn, released one per turn of the event loop, in arrival order.

    Released by a timer, which fires only after the loop has polled the sockets: between two requests of the
    line, every connection whose request has arrived meanwhile is admitted (or shed at once), and GETs are
    served. Released with plain callbacks (``sleep(0)``, an Event), the whole line would run back to back before
    the next poll (gevent runs new callbacks too before polling), and a shed request would wait for all of it.
    A released request that blocks on its client (a body still trickling in) does not hold the line up.
    """

    def __init__(self) -> None:
        self._waiters: deque[Waiter] = deque()
        self._timer = get_hub().loop.timer(0.0)

    def wait(self) -> None:
        """Block the current greenlet until its turn."""
        waiter = Waiter()
        self._waiters.append(waiter)
        if not self._timer.active:
            self._timer.start(self._release)
        try:
            waiter.get()
        except BaseException:  # killed while waiting (the worker is stopping)
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def _release(self) -> None:
        waiter = self._waiters.popleft() if self._waiters else None
        if self._waiters:
            self._timer.start(self._release)  # the next one after the next poll
        if waiter is not None:
            waiter.switch(None)


class _OneSegmentSocket:
    """A client socket whose first write of a response (gunicorn's status line and headers) waits for the next.

    gunicorn writes a response's headers and its body with two sends; on a keep-alive connection that is two
    TCP segments and two wake-ups of the client for a few hundred bytes. Held and sent together, they go out
    as one. Anything that reaches the file descriptor directly (``fileno()``, e.g. sendfile) flushes first.
    """

    __slots__ = ("_held", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._held: bytes | None = None

    def sendall(self, data: bytes, *args: Any) -> None:
        """Hold the first write; send it in front of the second; pass later ones through."""
        if self._held is None:
            self._held = bytes(data)
            return
        if self._held:
            data, self._held = self._held + data, b""
        self._sock.sendall(data, *args)

    def flush(self) -> None:
        """Send a held write that no second write followed (a response without body)."""
        if self._held:
            held, self._held = self._held, b""
            self._sock.sendall(held)

    def fileno(self) -> int:
        """The descriptor, after flushing: whoever writes to it directly must come after the held bytes."""
        self.flush()
        return self._sock.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class ReviewserveWorker(GeventWorker):
    """gunicorn's gevent worker with turns, a stall limit, connection re-homing and a quick exit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.keepalive_requests = settings.keepalive_requests or None
        self.max_queue_ms = settings.max_queue_ms
        self.retry_after = settings.retry_after_seconds
        self.max_body_bytes = settings.max_body_bytes
        self._admission = AdmissionQueue(settings.max_queue_ms / 1000) if settings.max_queue_ms > 0 else None
        self._shed_log = shedding.ShedLog()
        self._answers: shedding.OverloadedAnswers | None = None
        self._ids: shedding.RequestIds | None = None
        self._line: _Line | None = None  # made in run(), once gevent's hub exists in this process
        self._waiting: dict[Any, _KeepaliveWait] = {}  # greenlet -> its wait for a next request
        self._clients: dict[Any, Any] = {}  # greenlet -> its client socket
        self._last_request: dict[Any, float] = {}  # greenlet -> when its last request was answered
        self._excess = 0  # connections to close after their current response (above the fair share)

    def timeout_ctx(self) -> _KeepaliveWait:
        """gunicorn's keep-alive wait (it also bounds reading the request headers), made interruptible."""
        return _KeepaliveWait(self._waiting, self._last_request, self.cfg.keepalive)

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        """Serve one connection; no byte for ``KEEPALIVE`` (+1) seconds closes it."""
        # +1: while waiting for headers gunicorn's own keep-alive timeout fires first and ends quietly.
        client.settimeout(self.cfg.keepalive + 1 if self.cfg.keepalive else None)
        current = gevent.getcurrent()
        self._clients[current] = client
        try:
            AsyncWorker.handle(self, listener, client, addr)  # GeventWorker.handle only made it blocking
        finally:
            self._clients.pop(current, None)
            self._last_request.pop(current, None)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        """Serve one request (closing the connection after its quota), then let the others take a turn."""
        if self._excess > 0 and self.alive:
            self._excess -= 1
            req.must_close = True  # -> "Connection: close"; the client reconnects to a worker with room
        elif self.keepalive_requests and req.req_number >= self.keepalive_requests:
            req.must_close = True
        estimate = None
        if self._admission is not None and req.method == "POST":
            admission = self._admission
            size = _content_length(req)
            # A body larger than MAX_BODY_BYTES is refused (413) by the app without being read: no line for it.
            if size <= self.max_body_bytes:
                # Only a received request is work waiting: a body still arriving (a slow client) would otherwise
                # count by its announced length for as long as it trickles, and shed others meanwhile.
                if not admission.over_budget():
                    _receive_body(req, size)
                estimate = admission.admit(size)
                if estimate is None:
                    # No turn after a shed: it cost the others next to nothing, and its client's next request
                    # cannot be there before it has read this answer (the read yields to the loop anyway).
                    self._last_request[gevent.getcurrent()] = time.monotonic()
                    return self._shed_request(req, sock)
        try:
            if estimate is not None:
                return self._admitted_request(listener_name, req, sock, addr, size, estimate)
            return self._serve(listener_name, req, sock, addr)
        finally:
            self._last_request[gevent.getcurrent()] = time.monotonic()
            # Not sleep(0): gevent runs callbacks, new ones included, for up to 50 callbacks and its 5 ms
            # switch interval before it polls sockets again, so sleep(0) only rotates the connections that
            # are already runnable. A timer resumes this one after the next poll, behind the sockets
            # that have a request waiting (measured at c=8: p99 23 ms with sleep(0), 5 ms with the timer).
            gevent.sleep(TURN_SECONDS)

    def _serve(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        out = _OneSegmentSocket(sock)
        try:
            return super().handle_request(listener_name, req, out, addr)
        finally:
            out.flush()

    def _admitted_request(
        self, listener_name: Any, req: Any, sock: Any, addr: Any, size: int, estimate: float
    ) -> Any:  # fmt: skip
        """An admitted POST: wait in line, then serve unless the client left."""
        admission = self._admission
        assert admission is not None
        arrived = time.perf_counter()
        if self._line is None:
            self._line = _Line()
        try:
            self._line.wait()
        finally:
            admission.start(estimate)
        if shedding.client_gone(sock):
            shedding.abandoned(req, shedding.request_id(req), time.perf_counter() - arrived)
            raise StopIteration()  # nobody to answer: close the connection
        # CPU time, not wall time: the work a request costs this worker, whatever else the machine runs.
        loop = get_hub().loop
        started, turn = time.thread_time(), loop.iteration
        try:
            return self._serve(listener_name, req, sock, addr)
        finally:
            # A request that waited on its client (a body still arriving, a full send buffer) let the loop serve
            # others meanwhile, and its thread CPU time counts theirs: learning from it would inflate the estimate
            # (measured: 55% of c=8 list requests shed in make bench-smoke). Only requests served in one go teach it.
            if loop.iteration == turn:
                admission.finished(size, time.thread_time() - started)

    def _shed_request(self, req: Any, sock: Any) -> bool:
        """Answer 503 overloaded without reading the body; the parser discards it if the connection stays."""
        rid = None
        close = not self.alive or req.should_close() or getattr(req, "must_close", False)
        for name, value in req.headers:
            if name == "X-REQUEST-ID" and rid is None and valid_request_id(value):
                rid = value
            # A client waiting for "100 Continue" will not send the body we would have to skip.
            elif name == "EXPECT" and value.lower() == "100-continue":
                close = True
        if self._answers is None:  # first shed of this process (after the fork: the ids' prefix is per worker)
            self._answers, self._ids = shedding.OverloadedAnswers(self.retry_after), shedding.RequestIds()
        assert self._ids is not None
        _send(sock, self._answers.answer(req.path, rid or self._ids.new(), close))
        assert self._admission is not None
        self._shed_log.shed(self.max_queue_ms, self._admission.waiting, self._admission.waiting_seconds)
        if close:
            raise StopIteration()
        return True

    def over_budget(self) -> bool:
        """Whether a POST arriving now would be shed (for :class:`rawshed.ShedFirstParser`)."""
        admission = self._admission
        return (
            admission is not None
            and admission.over_budget()
            and self._excess <= 0  # a connection to close goes through handle_request (Connection: close)
            and self.alive
        )

    def shed_raw(self, sock: Any, path: str, rid: str | None, greenlet: Any) -> bytes:
        """Answer a request shed by the parser (keep-alive) and count it; the part of the answer not sent yet.

        Runs in the event loop's readiness callback (:mod:`reviewserve.web.rawshed`), so it never blocks: what the
        socket does not take at once is returned, for the connection's greenlet to send.
        """
        if self._answers is None:
            self._answers, self._ids = shedding.OverloadedAnswers(self.retry_after), shedding.RequestIds()
        assert self._ids is not None and self._admission is not None
        unsent = _send_now(sock, self._answers.answer(path, rid or self._ids.new(), False))
        # Also what keeps the connection's wait for its next request going (_KeepaliveWait): it was not silent.
        self._last_request[greenlet] = time.monotonic()
        self._shed_log.shed(self.max_queue_ms, self._admission.waiting, self._admission.waiting_seconds)
        return unsent

    def _install_parser(self) -> None:
        """Have gunicorn's connection handler use :class:`rawshed.ShedFirstParser` in this worker process."""
        original = gunicorn_http.get_parser

        def get_parser(cfg: Any, source: Any, source_addr: Any, http2_connection: bool = False) -> Any:
            if http2_connection or getattr(cfg, "protocol", "http") != "http" or not hasattr(source, "recv"):
                return original(cfg, source, source_addr, http2_connection)
            return ShedFirstParser(cfg, source, source_addr, self)

        gunicorn_http.get_parser = get_parser  # this process only: it is the worker, forked already

    def run(self) -> None:
        """Accept and serve until told to stop, then drain quickly (see the module docstring)."""
        if self._admission is not None:
            self._install_parser()
        servers = []
        for sock in self.sockets:
            sock.setblocking(1)
            pool = Pool(self.worker_connections)
            server = StreamServer(sock, handle=partial(self.handle, sock), spawn=pool)
            if self.cfg.workers > 1:
                server.max_accept = 1  # take one connection per wake-up: leave the rest to idle workers
            server.start()
            servers.append(server)

        balancer = ConnectionBalancer(self.pid) if self.cfg.workers > 1 else None
        last_notify = 0.0
        accepting = True
        while self.alive:
            now = time.monotonic()
            if now - last_notify >= 1.0:
                self.notify()
                last_notify = now
            if balancer is not None:
                self._excess = balancer.excess(self._active_connections(now))
                if accepting != (self._excess == 0):
                    accepting = self._excess == 0
                    for server in servers:
                        if accepting:
                            server.start_accepting()
                        else:
                            server.stop_accepting()
            self._shed_log.publish()
            gevent.sleep(POLL_SECONDS)
        if balancer is not None:
            balancer.release()

        for server in servers:
            server.close()  # stop accepting; busy connections close after their response (not alive)
        self._drain(servers)
        # Exit here rather than through interpreter teardown, where gevent's patched threading module is
        # already gone and logging's weakref callbacks print "Exception ignored" tracebacks at every recycle.
        self._shed_log.flush()
        self.log.info("Worker exiting (pid: %s)", self.pid)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    def _active_connections(self, now: float) -> int:
        """Connections that have had a request answered in the last ``ACTIVE_SECONDS``."""
        return sum(1 for answered in self._last_request.values() if now - answered <= ACTIVE_SECONDS)

    def _drain(self, servers: list[StreamServer]) -> None:
        """Wait for the in-flight requests; end idle keep-alive waits after a short linger."""
        started = time.monotonic()
        recycled = self.nr >= self.max_requests
        linger = RECYCLE_LINGER_SECONDS if recycled else STOP_KEEPALIVE_LINGER
        linger_until = started + min(linger, self.cfg.graceful_timeout)
        while time.monotonic() - started <= self.cfg.graceful_timeout:
            if all(server.pool.free_count() == server.pool.size for server in servers):
                return
            if time.monotonic() >= linger_until:
                self._close_waiting_on_clients()
            self.notify()
            gevent.sleep(POLL_SECONDS)
        self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
        for server in servers:
            server.stop(timeout=1)

    def _close_waiting_on_clients(self) -> None:
        """Close every connection that is waiting on its client; a request that has fully arrived is finished.

        The worker computes one request at a time, so when this runs every other connection is either ready
        to run (its request is answered) or blocked on its client: idle, a request still trickling in, or a
        response the client does not read. Those are closed: past the linger they are what keeps a stopping
        worker (and, when it is recycled, its replacement) from running, e.g. a client trickling a body.
        """
        for greenlet, client in list(self._clients.items()):
            wait = self._waiting.get(greenlet)
            if wait is not None:  # waiting for a request: keep one whose bytes are already there
                try:
                    if select.select([client], [], [], 0)[0]:
                        continue
                except (OSError, ValueError):
                    pass
                greenlet.kill(exception=wait, block=False)  # ends quietly, like a keep-alive timeout
            elif _waits_on(client):
                greenlet.kill(block=False)  # GreenletExit: the handler's finally closes the socket


def _content_length(req: Any) -> int:
    """The request's ``Content-Length`` (0 when chunked or absent; gunicorn has already validated it)."""
    for name, value in req.headers:
        if name == "CONTENT-LENGTH":
            return int(value)
    return 0


def _receive_body(req: Any, length: int) -> None:
    """Wait until the whole body of ``length`` bytes has arrived, holding it in gunicorn's buffer for the app.

    The bytes already received are read at once (what the app would do first thing); a body still arriving
    blocks only this greenlet. A client that closes or stalls for ``KEEPALIVE`` seconds meanwhile ends the
    connection (logged, not scored). A client that waits for ``100 Continue`` sends its body only once the
    app reads it: left to gunicorn.
    """
    for name, value in req.headers:
        if name == "EXPECT" and value.lower() == "100-continue":
            return
    unreader = req.unreader
    buffer = unreader.buf
    buffer.seek(0, os.SEEK_END)
    missing = length - buffer.tell()
    started = time.perf_counter()
    while missing > 0:
        try:
            chunk = unreader.chunk(missing)
        except OSError as exc:  # a stall past the socket timeout, a reset
            shedding.body_not_received(req, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
            raise StopIteration() from exc
        if not chunk:
            shedding.body_not_received(req, time.perf_counter() - started, None)
            raise StopIteration()
        buffer.write(chunk)
        missing -= len(chunk)


def _send_now(sock: Any, data: bytes) -> bytes:
    """Send what a gevent socket's buffer takes of ``data`` at once, without blocking; return the rest.

    One plain send on the non-blocking socket under the gevent one: gevent's ``sendall`` reads the buffer size
    (a ``getsockopt`` system call) before every send, for a shed answer a system call more than the send itself.
    A short answer to a client that waits for it is taken whole.
    """
    try:
        sent = sock._sock.send(data)
    except (BlockingIOError, InterruptedError):
        sent = 0
    return data[sent:]


def _send(sock: Any, data: bytes) -> None:
    """Send ``data`` on a gevent socket: one plain send (:func:`_send_now`), gevent's ``sendall`` for any rest."""
    unsent = _send_now(sock, data)
    if unsent:
        sock.sendall(unsent)


def _waits_on(client: Any) -> bool:
    """Whether a greenlet is blocked reading from or writing to ``client`` (gevent socket watchers)."""
    read, write = getattr(client, "_read_event", None), getattr(client, "_write_event", None)
    return bool((read is not None and read.active) or (write is not None and write.active))

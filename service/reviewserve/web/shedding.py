"""What a worker does with the requests it does not score: shed ones (503) and ones whose client left.

Both happen in the worker before the request reaches Flask (its body is never parsed), so the answer is
written here in the shape of :mod:`reviewserve.web.errors` and counted in the multiprocess metrics.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import select
import time
import uuid
from typing import Any

from gevent.monkey import get_original
from prometheus_client import Counter

from reviewserve.web.errors import V2_PREFIX
from reviewserve.web.requestlog import HEADER, valid_request_id

log = logging.getLogger("reviewserve.shedding")
access_log = logging.getLogger("reviewserve.access")

# Not registered in a registry: under gunicorn (PROMETHEUS_MULTIPROC_DIR) every process's values go to the
# multiprocess files, which /metrics sums; shedding only exists under gunicorn. Created at import, in the master
# (it imports the worker class), so /metrics shows 0 before the first shed.
SHED = Counter(
    "reviewserve_requests_shed",
    "Requests answered 503 overloaded without being read or scored (the worker had more than MAX_QUEUE_MS "
    "of work waiting).",
    registry=None,
)
ABANDONED = Counter(
    "reviewserve_requests_abandoned",
    "Requests not scored because their client closed the connection while they waited.",
    registry=None,
)

OVERLOADED_MESSAGE = "the server is overloaded: retry after the Retry-After seconds, possibly on another replica"
SUMMARY_SECONDS = 10.0  # sheds are logged as one warning per this many seconds, not one line each
_poll = get_original("select", "poll")  # a real poll(2): checked with timeout 0, never waits
_GONE = select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL


def request_id(req: Any) -> str:
    """The request's valid ``X-Request-ID`` (gunicorn's parsed headers), or a new one."""
    for name, value in req.headers:
        if name == "X-REQUEST-ID" and valid_request_id(value):
            return value
    return uuid.uuid4().hex


class RequestIds:
    """New request ids for shed answers: 32 hex digits, a random per-process prefix and a counter.

    As unique as ``uuid4().hex`` in practice (80 random bits per process, then a count) at a fraction of the
    cost: a shed must cost a few percent of a served request (docs/benchmarks.md). Made after the fork: a
    prefix made in the master would be shared by every worker.
    """

    __slots__ = ("_count", "_prefix")

    def __init__(self) -> None:
        self._prefix = os.urandom(10).hex()
        self._count = itertools.count()

    def new(self) -> str:
        """A new id."""
        return f"{self._prefix}{next(self._count) & 0xFFFFFFFFFFFF:012x}"


_PLACEHOLDER = "@@request-id@@"


class OverloadedAnswers:
    """The 503 answers (status line, headers, JSON error body), pre-encoded around the request id.

    A shed then costs a few byte joins instead of a ``json.dumps`` and header formatting. A request id is
    1-128 characters of ``[A-Za-z0-9._:/+=-]`` (``valid_request_id``), none of which JSON escapes, so it is
    spliced into the body as is.
    """

    def __init__(self, retry_after: int) -> None:
        self._parts: dict[tuple[bool, bool], tuple[bytes, ...]] = {}
        for v2 in (False, True):
            if v2:
                body: dict[str, Any] = {"error": OVERLOADED_MESSAGE, "code": "overloaded", "request_id": _PLACEHOLDER}
            else:
                body = {"error": {"code": "overloaded", "message": OVERLOADED_MESSAGE, "request_id": _PLACEHOLDER}}
            before, after = json.dumps(body).encode().split(_PLACEHOLDER.encode())
            for close in (False, True):
                head = (
                    "HTTP/1.1 503 Service Unavailable\r\n"
                    "Content-Type: application/json\r\n"
                    f"Retry-After: {retry_after}\r\n"
                    f"{'Connection: close' if close else 'Connection: keep-alive'}\r\n"
                    f"{HEADER}: "
                ).encode("latin-1")
                # head + rid + b"\r\nContent-Length: " + length + b"\r\n\r\n" + before + rid + after
                self._parts[v2, close] = (head, b"\r\nContent-Length: ", b"\r\n\r\n", before, after)

    def answer(self, path: str, rid: str, close: bool) -> bytes:
        """The whole answer for a request to ``path`` (the /v2 shape under /v2) with id ``rid``."""
        v2 = path == V2_PREFIX or path.startswith(V2_PREFIX + "/")
        head, length_name, end, before, after = self._parts[v2, close]
        rid_bytes = rid.encode("ascii")
        length = len(before) + len(rid_bytes) + len(after)
        return b"".join((head, rid_bytes, length_name, b"%d" % length, end, before, rid_bytes, after))


@functools.lru_cache(maxsize=8)
def _answers(retry_after: int) -> OverloadedAnswers:
    return OverloadedAnswers(retry_after)


def overloaded_response(path: str, rid: str, retry_after: int, close: bool) -> bytes:
    """The whole 503 answer (status line, headers, JSON error body) as bytes."""
    return _answers(retry_after).answer(path, rid, close)


def client_gone(sock: Any) -> bool:
    """Whether the client has closed (or reset) its side of the connection; never blocks."""
    try:
        poller = _poll()
        poller.register(sock.fileno(), _GONE)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True  # closed under us


class ShedLog:
    """Counts sheds and logs them: the first of a burst at once, then at most one summary line every
    :data:`SUMMARY_SECONDS`, and what is left unreported when the worker exits (a recycled worker may live less).

    The metric is published in batches (:meth:`publish`): by the worker every 50 ms (``POLL_SECONDS``) and on exit,
    and by this process's ``/metrics`` before it reads the counters. An increment of a multiprocess counter checks
    the process id with a system call, a few percent of a shed's CPU.
    """

    def __init__(self) -> None:
        global _current
        self.unreported = 0
        self.unpublished = 0  # sheds not yet added to SHED
        self.first = 0.0  # when the first unreported shed happened (monotonic)
        self.logged = float("-inf")  # when the last line was written
        self.last = (0.0, 0, 0.0)  # MAX_QUEUE_MS, requests waiting and their estimated seconds at the last shed
        _current = self

    def shed(self, max_queue_ms: float, waiting: int, waiting_seconds: float) -> None:
        """Record one shed request (``waiting`` requests, estimated at ``waiting_seconds``, were in line)."""
        self.unpublished += 1
        now = time.monotonic()
        if not self.unreported:
            self.first = now
        self.unreported += 1
        self.last = (max_queue_ms, waiting, waiting_seconds)
        if now - self.logged >= SUMMARY_SECONDS:
            self.flush(now)

    def publish(self) -> None:
        """Add the sheds counted since the last call to ``reviewserve_requests_shed_total``."""
        if self.unpublished:
            count, self.unpublished = self.unpublished, 0
            SHED.inc(count)

    def flush(self, now: float | None = None) -> None:
        """Log the sheds not reported yet (none: nothing) and publish their count."""
        self.publish()
        if not self.unreported:
            return
        now = time.monotonic() if now is None else now
        max_queue_ms, waiting, waiting_seconds = self.last
        log.warning(
            "overloaded: shed %d request(s) in %.1f s (more than MAX_QUEUE_MS=%g ms of work waiting; "
            "last: %d requests, %.1f ms)",
            self.unreported,
            now - self.first,
            max_queue_ms,
            waiting,
            waiting_seconds * 1000,
        )
        self.unreported, self.logged = 0, now


_current: ShedLog | None = None  # this process's (a worker has one)


def publish_sheds() -> None:
    """Publish this process's sheds not counted in the metric yet (before ``/metrics`` reads the counters)."""
    if _current is not None:
        _current.publish()


def _log_unscored(req: Any, rid: str, waited: float, status: int, outcome: str) -> None:
    """An access-log line for a request that was not scored (the shape of the app's request lines)."""
    access_log.info(
        "request",
        extra={
            "method": req.method,
            "path": req.path,
            "status": status,
            "duration_ms": round(waited * 1000, 3),
            "request_id": rid,
            "reviews": 0,
            "outcome": outcome,
        },
    )


def abandoned(req: Any, rid: str, waited: float) -> None:
    """Record a request whose client left while it waited (logged like nginx's 499)."""
    ABANDONED.inc()
    _log_unscored(req, rid, waited, 499, "client closed the connection while the request waited; not scored")


def body_not_received(req: Any, waited: float, error: str | None) -> None:
    """Record a request whose body never arrived: the client closed (``error`` None: 499) or stalled (408)."""
    if error is None:
        ABANDONED.inc()
        status, outcome = 499, "client closed the connection before sending the whole body; not scored"
    else:
        status, outcome = 408, f"request body not received ({error}); connection closed, not scored"
    _log_unscored(req, request_id(req), waited, status, outcome)

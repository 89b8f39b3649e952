"""What a worker does with the requests it does not score: shed ones (503) and ones whose client left.

Both happen in the worker before the request reaches Flask (its body is never parsed), so the answer is
written here in the shape of :mod:`reviewserve.web.errors` and counted in the multiprocess metrics.
"""

from __future__ import annotations

import json
import logging
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


def overloaded_response(path: str, rid: str, retry_after: int, close: bool) -> bytes:
    """The whole 503 answer (status line, headers, JSON error body) as bytes."""
    if path == V2_PREFIX or path.startswith(V2_PREFIX + "/"):
        body: dict[str, Any] = {"error": OVERLOADED_MESSAGE, "code": "overloaded", "request_id": rid}
    else:
        body = {"error": {"code": "overloaded", "message": OVERLOADED_MESSAGE, "request_id": rid}}
    data = json.dumps(body).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n"
        f"Retry-After: {retry_after}\r\n"
        f"{HEADER}: {rid}\r\n"
        f"{'Connection: close' if close else 'Connection: keep-alive'}\r\n\r\n"
    )
    return head.encode("latin-1") + data


def client_gone(sock: Any) -> bool:
    """Whether the client has closed (or reset) its side of the connection; never blocks."""
    try:
        poller = _poll()
        poller.register(sock.fileno(), _GONE)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True  # closed under us


class ShedLog:
    """Counts sheds and logs them as a summary every :data:`SUMMARY_SECONDS`, not one line per request."""

    def __init__(self) -> None:
        self.unreported = 0
        self.since = time.monotonic()

    def shed(self, max_queue_ms: float, waiting: int, waiting_seconds: float) -> None:
        """Record one shed request (``waiting`` requests, estimated at ``waiting_seconds``, were in line)."""
        SHED.inc()
        self.unreported += 1
        now = time.monotonic()
        if now - self.since >= SUMMARY_SECONDS:
            log.warning(
                "overloaded: shed %d requests in %.0f s (more than MAX_QUEUE_MS=%g ms of work waiting; "
                "last: %d requests, %.1f ms)",
                self.unreported,
                now - self.since,
                max_queue_ms,
                waiting,
                waiting_seconds * 1000,
            )
            self.unreported, self.since = 0, now


def abandoned(req: Any, rid: str, waited: float) -> None:
    """Record a request whose client left while it waited (logged like nginx's 499)."""
    ABANDONED.inc()
    access_log.info(
        "request",
        extra={
            "method": req.method,
            "path": req.path,
            "status": 499,
            "duration_ms": round(waited * 1000, 3),
            "request_id": rid,
            "reviews": 0,
            "outcome": "client closed the connection while the request waited; not scored",
        },
    )

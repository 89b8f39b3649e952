"""Request ids (``X-Request-ID``, honoured or made) and one structured JSON log line per request."""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

log = logging.getLogger("reviewserve.access")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
HEADER = "X-Request-ID"


def init_request_log(app: Flask) -> None:
    """Register the before/after hooks that set the request id and log the request."""
    # Module-level hooks, not nested functions: the mutation run only mutates top-level functions.
    app.before_request(start_request)
    app.after_request(finish_request)


def valid_request_id(value: str) -> bool:
    """Whether an incoming ``X-Request-ID`` may be used as is (1-128 safe characters)."""
    return _VALID_ID.match(value) is not None


def start_request() -> None:
    """Take a valid incoming ``X-Request-ID`` or make one; start the clock."""
    incoming = request.headers.get(HEADER, "")
    g.request_id = incoming if valid_request_id(incoming) else uuid.uuid4().hex
    g.started = time.perf_counter()


def finish_request(response: Response) -> Response:
    """Echo the request id and log one JSON line for the request."""
    request_id = getattr(g, "request_id", None) or uuid.uuid4().hex
    response.headers[HEADER] = request_id
    duration = time.perf_counter() - getattr(g, "started", time.perf_counter())
    log.info(
        "request",
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round(duration * 1000, 3),
            "request_id": request_id,
            "reviews": getattr(g, "reviews", 0),
            "remote_addr": request.remote_addr,
        },
    )
    return response

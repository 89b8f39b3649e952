"""JSON errors for every failure, with the right status.

``{"error": {"code": ..., "message": ..., "request_id": ...}}`` everywhere except under ``/v2``, where the
Open Inference Protocol's own shape ``{"error": "<message>"}`` is kept (its clients read ``error`` as a
string) and ``code`` / ``request_id`` ride alongside.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, has_request_context, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class APIError(Exception):
    """An error answered to the client as JSON with ``status``."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


V2_PREFIX = "/v2"


def error_response(status: int, code: str, message: str, details: Any = None) -> Response:
    """Build the JSON error response (V2 shape under ``/v2``)."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    request_id = getattr(g, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    if has_request_context() and (request.path == V2_PREFIX or request.path.startswith(V2_PREFIX + "/")):
        response = jsonify({"error": body.pop("message"), **body})
    else:
        response = jsonify({"error": body})
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    """Turn APIError, every HTTPException and unexpected exceptions into JSON errors."""
    # Module-level handlers, not nested functions: the mutation run only mutates top-level functions.
    app.register_error_handler(APIError, api_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected_error)


def api_error(exc: APIError) -> Response:
    """An :class:`APIError` as its JSON error."""
    return error_response(exc.status, exc.code, exc.message, exc.details)


def http_error(exc: HTTPException) -> Response:
    """A werkzeug HTTP error (404, 405, 413...) as a JSON error, keeping ``Allow`` for 405."""
    status = exc.code or 500
    response = error_response(status, _HTTP_CODES.get(status, "http_error"), exc.description or exc.name)
    valid_methods = getattr(exc, "valid_methods", None)
    if valid_methods:
        response.headers["Allow"] = ", ".join(valid_methods)
    return response


def unexpected_error(exc: Exception) -> Response:
    """Anything else: logged with its traceback, answered as a JSON 500 with the request id."""
    log.exception("unhandled error", extra={"request_id": getattr(g, "request_id", None)})
    return error_response(500, "internal_error", "internal server error; quote the request_id when reporting")

"""Probes and the API document: ``/healthz`` (liveness), ``/readyz`` (readiness), ``/openapi.json``."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from reviewserve.web.state import state

bp = Blueprint("health", __name__)
# add_url_rule at the bottom rather than decorators, so the mutation run covers the handlers.


def healthz() -> Response:
    """Liveness: the process answers HTTP. Never depends on the model, so a bad model does not restart-loop."""
    return jsonify({"status": "ok"})


def readyz() -> tuple[Response, int]:
    """Readiness: 200 when the model is loaded and verified and the server is not shutting down."""
    current = state()
    reason = current.not_ready_reason()
    if reason is not None:
        return jsonify({"status": "not ready", "reason": reason}), 503
    predictor = current.predictor
    assert predictor is not None
    return jsonify({"status": "ready", "model": {"name": predictor.name, "version": predictor.version}}), 200


def openapi() -> Response:
    """OpenAPI 3.1 description of this server."""
    return jsonify(state().openapi)


bp.add_url_rule("/healthz", view_func=healthz, methods=["GET"])
bp.add_url_rule("/readyz", view_func=readyz, methods=["GET"])
bp.add_url_rule("/openapi.json", view_func=openapi, methods=["GET"])

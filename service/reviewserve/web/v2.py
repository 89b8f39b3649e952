"""Open Inference Protocol V2 (KServe / MLServer REST) for the same model."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request

import reviewserve
from reviewserve.model import Predictor
from reviewserve.web import codecs
from reviewserve.web.errors import V2_PREFIX, APIError
from reviewserve.web.state import state

bp = Blueprint("v2", __name__, url_prefix=V2_PREFIX)


def _model(name: str, version: str | None = None) -> Predictor:
    predictor = state().require_predictor()
    if name != predictor.name or (version is not None and version != predictor.version):
        wanted = f"{name}:{version}" if version else name
        raise APIError(
            404, "model_not_found", f"model {wanted!r} is not served here; this server serves {predictor.name!r}"
        )
    return predictor


def _ready_body(ready: bool, **extra: Any) -> tuple[Response, int]:
    return jsonify({"ready": ready, **extra}), 200 if ready else 503


@bp.get("")
def server_metadata() -> Response:
    """Server metadata."""
    return jsonify({"name": "reviewserve", "version": reviewserve.__version__, "extensions": []})


@bp.get("/health/live")
def live() -> Response:
    """V2 liveness: the process serves."""
    return jsonify({"live": True})


@bp.get("/health/ready")
def ready() -> tuple[Response, int]:
    """V2 readiness: same rule as ``/readyz``."""
    reason = state().not_ready_reason()
    return _ready_body(reason is None, **({"reason": reason} if reason else {}))


@bp.get("/models/<name>")
@bp.get("/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None) -> Response:
    """Model metadata: one BYTES input, label and probability outputs."""
    predictor = _model(name, version)
    return jsonify(
        {
            "name": predictor.name,
            "versions": [predictor.version],
            "platform": "scikit-learn",
            "inputs": [{"name": "review", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "probability", "datatype": "FP64", "shape": [-1]},
                {"name": "positive_probability", "datatype": "FP64", "shape": [-1]},
            ],
        }
    )


@bp.get("/models/<name>/ready")
@bp.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None) -> tuple[Response, int]:
    """Model readiness (404 for a model this server does not serve)."""
    current = state()
    if current.predictor is not None:
        _model(name, version)
    reason = current.not_ready_reason()
    return _ready_body(reason is None, name=name, **({"reason": reason} if reason else {}))


@bp.post("/models/<name>/infer")
@bp.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None) -> Response:
    """V2 inference on a BYTES tensor of review strings."""
    current = state()
    body = codecs.read_json(request)
    infer_request = codecs.decode_v2(body, current.settings.max_reviews)
    predictor = _model(name, version)
    texts = infer_request.inputs[0].data
    g.reviews = len(texts)
    predictions = codecs.score(predictor, texts)
    current.metrics.observe(predictions)
    return jsonify(codecs.encode_v2(infer_request, predictions, predictor))

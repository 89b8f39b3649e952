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
# Routes are registered at the bottom with add_url_rule, not decorators: mutmut skips decorated
# functions, and these handlers belong in the mutation run (docs/mutation.md).


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


def server_metadata() -> Response:
    """Server metadata."""
    return jsonify({"name": "reviewserve", "version": reviewserve.__version__, "extensions": []})


def live() -> Response:
    """V2 liveness: the process serves."""
    return jsonify({"live": True})


def ready() -> tuple[Response, int]:
    """V2 readiness: same rule as ``/readyz``."""
    reason = state().not_ready_reason()
    return _ready_body(reason is None, **({"reason": reason} if reason else {}))


def model_metadata(name: str, version: str | None = None) -> Response:
    """Model metadata: one BYTES input, label and probability outputs."""
    predictor = _model(name, version)
    return jsonify(
        {
            "name": predictor.name,
            "versions": [predictor.version],
            "platform": "scikit-learn",
            "inputs": [{"name": codecs.INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
            "outputs": [
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "probability", "datatype": "FP64", "shape": [-1]},
                {"name": "positive_probability", "datatype": "FP64", "shape": [-1]},
            ],
        }
    )


def model_ready(name: str, version: str | None = None) -> tuple[Response, int]:
    """Model readiness (404 for a model this server does not serve)."""
    current = state()
    if current.predictor is not None:
        _model(name, version)
    reason = current.not_ready_reason()
    return _ready_body(reason is None, name=name, **({"reason": reason} if reason else {}))


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


bp.add_url_rule("", view_func=server_metadata, methods=["GET"])
bp.add_url_rule("/health/live", view_func=live, methods=["GET"])
bp.add_url_rule("/health/ready", view_func=ready, methods=["GET"])
bp.add_url_rule("/models/<name>", view_func=model_metadata, methods=["GET"])
bp.add_url_rule("/models/<name>/versions/<version>", view_func=model_metadata, methods=["GET"])
bp.add_url_rule("/models/<name>/ready", view_func=model_ready, methods=["GET"])
bp.add_url_rule("/models/<name>/versions/<version>/ready", view_func=model_ready, methods=["GET"])
bp.add_url_rule("/models/<name>/infer", view_func=infer, methods=["POST"])
bp.add_url_rule("/models/<name>/versions/<version>/infer", view_func=infer, methods=["POST"])

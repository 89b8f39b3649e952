"""``POST /predict``: the seed contract, ``{"review": ...}`` -> ``{"prediction": ...}``, and lists."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, request

from reviewserve.web import codecs
from reviewserve.web.state import state

bp = Blueprint("predict", __name__)


def predict() -> Response:
    """Score one review (``review``) or several (``reviews``)."""
    current = state()
    body = codecs.read_json(request)
    texts, single = codecs.decode_seed(body, current.settings.max_reviews)
    g.reviews = len(texts)
    predictor = current.require_predictor()
    predictions = codecs.score(predictor, texts)
    current.metrics.observe(predictions)
    return jsonify(codecs.encode_seed(predictions, single, predictor))


# add_url_rule rather than a decorator, so the mutation run covers the handler.
bp.add_url_rule("/predict", view_func=predict, methods=["POST"])

"""The API's values, not only its shapes: pinned answers, the plain pipeline as oracle, readiness bodies, metrics.

Two references for every answer: a few reviews pinned to the values docs/api.md documents (6 decimals on the
seed API, full floats on V2), and the committed pipeline's own ``predict_proba`` called directly, so a bug
shared by the list and single paths (or by the predictor itself) cannot hide by agreeing with itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from reviewserve.model.artifact import load_verified
from reviewserve.settings import Settings
from reviewserve.web.app import create_app
from tests.promtext import label_values, sample

MODEL = {"name": "review-sentiment", "version": "1"}
INFER = "/v2/models/review-sentiment/infer"
# Documented in docs/api.md: label, probability of that label, positive-class probability, 6 decimals.
PINNED = {
    "This Chatbot is amazing": ("positive", 0.954531, 0.954531),
    "I love this phone": ("positive", 0.759731, 0.759731),
    "Battery died in a day": ("negative", 0.746916, 0.253084),
    "worst service ever": ("negative", 0.97638, 0.02362),
    # contractions, "can not" and negation scopes: the tokenizer inside the pipeline shapes these values
    "I can not recommend it, the screen doesn't work!": ("negative", 0.950145, 0.049855),
    "It isn't good. Never again?": ("negative", 0.994222, 0.005778),
    "Not what I hoped; great battery though.": ("positive", 0.501428, 0.501428),
}
REVIEWS = list(PINNED)


@pytest.fixture(scope="module")
def pipeline(model_dir: Path) -> tuple[Any, list[str], int]:
    """The committed scikit-learn pipeline, its label names and the positive label's column."""
    estimator, card = load_verified(model_dir)
    return estimator, card.labels, card.labels.index(card.positive_label)


def oracle(pipeline: tuple[Any, list[str], int], reviews: list[str]) -> list[tuple[str, float, float]]:
    """(label, probability of that label, positive probability) straight from ``predict_proba``."""
    estimator, labels, positive = pipeline
    rows = estimator.predict_proba(reviews)
    return [(labels[int(row.argmax())], float(row.max()), float(row[positive])) for row in rows]


@pytest.fixture(scope="module")
def app(model_dir: Path) -> Flask:
    """Shared by the read-only tests; the metric tests build their own app (counters start at zero)."""
    return create_app(Settings(model_path=model_dir))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def fresh_client(model_dir: Path) -> FlaskClient:
    return create_app(Settings(model_path=model_dir)).test_client()


def _seed(label: str, probability: float, positive: float) -> dict[str, Any]:
    return {"prediction": label, "probability": round(probability, 6), "positive_probability": round(positive, 6)}


def test_the_oracle_agrees_with_the_documented_values(pipeline) -> None:
    assert [_seed(*p) for p in oracle(pipeline, REVIEWS)] == [_seed(*p) for p in PINNED.values()]


@pytest.mark.parametrize("review", REVIEWS)
def test_single_review_answers_the_pinned_values(client: FlaskClient, pipeline, review: str) -> None:
    response = client.post("/predict", json={"review": review})
    assert response.status_code == 200
    label, probability, positive = PINNED[review]
    expected = {"prediction": label, "probability": probability, "positive_probability": positive, "model": MODEL}
    assert response.get_json() == expected
    assert response.get_json() == {**_seed(*oracle(pipeline, [review])[0]), "model": MODEL}


def test_review_list_answers_the_pipeline_values_in_order(client: FlaskClient, pipeline) -> None:
    reviews = [*REVIEWS, "It works.", "I hate it", "awful, broke in a day"]
    response = client.post("/predict", json={"reviews": reviews})
    assert response.status_code == 200
    assert response.get_json() == {"predictions": [_seed(*p) for p in oracle(pipeline, reviews)], "model": MODEL}
    assert response.get_json()["predictions"][: len(PINNED)] == [_seed(*p) for p in PINNED.values()]


def _close(values: list[float]) -> object:
    """The pipeline's own floats, to the exact fast path's tolerance (1e-9; see tests/unit/test_fastpath.py)."""
    return pytest.approx(values, rel=0, abs=1e-9)


def test_v2_outputs_are_the_pipeline_values_at_full_precision(client: FlaskClient, pipeline) -> None:
    reviews = [*REVIEWS, "I hate it"]
    body = {"id": "v", "inputs": [{"name": "review", "shape": [len(reviews)], "datatype": "BYTES", "data": reviews}]}
    response = client.post(INFER, json=body)
    assert response.status_code == 200
    expected = oracle(pipeline, reviews)
    n = len(reviews)
    assert response.get_json() == {
        "model_name": "review-sentiment",
        "model_version": "1",
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [n], "data": [e[0] for e in expected]},
            {"name": "probability", "datatype": "FP64", "shape": [n], "data": _close([e[1] for e in expected])},
            {
                "name": "positive_probability",
                "datatype": "FP64",
                "shape": [n],
                "data": _close([e[2] for e in expected]),
            },
        ],
        "id": "v",
    }
    probabilities = response.get_json()["outputs"][1]["data"]
    assert [round(p, 6) for p in probabilities[: len(PINNED)]] == [p[1] for p in PINNED.values()]


def test_v2_selected_outputs_come_in_the_requested_order(client: FlaskClient, pipeline) -> None:
    body = {
        "inputs": [{"name": "review", "shape": [1], "datatype": "BYTES", "data": ["Battery died in a day"]}],
        "outputs": [{"name": "positive_probability"}, {"name": "label"}],
    }
    result = client.post(INFER, json=body).get_json()
    [(label, _, positive)] = oracle(pipeline, ["Battery died in a day"])
    assert result["outputs"] == [
        {"name": "positive_probability", "datatype": "FP64", "shape": [1], "data": _close([positive])},
        {"name": "label", "datatype": "BYTES", "shape": [1], "data": [label]},
    ]
    assert "id" not in result


def test_readiness_bodies(client: FlaskClient) -> None:
    ready = client.get("/readyz")
    assert (ready.status_code, ready.get_json()) == (200, {"status": "ready", "model": MODEL})
    v2 = client.get("/v2/health/ready")
    assert (v2.status_code, v2.get_json()) == (200, {"ready": True})
    model = client.get("/v2/models/review-sentiment/ready")
    assert (model.status_code, model.get_json()) == (200, {"ready": True, "name": "review-sentiment"})
    versioned = client.get("/v2/models/review-sentiment/versions/1/ready")
    assert (versioned.status_code, versioned.get_json()) == (200, {"ready": True, "name": "review-sentiment"})


def test_readiness_turns_503_with_the_reason_while_draining(client: FlaskClient) -> None:
    from reviewserve.web import lifecycle

    lifecycle.start_draining()
    try:
        ready = client.get("/readyz")
        assert (ready.status_code, ready.get_json()) == (503, {"status": "not ready", "reason": "shutting down"})
        v2 = client.get("/v2/health/ready")
        assert (v2.status_code, v2.get_json()) == (503, {"ready": False, "reason": "shutting down"})
        model = client.get("/v2/models/review-sentiment/ready")
        assert model.get_json() == {"ready": False, "name": "review-sentiment", "reason": "shutting down"}
        assert model.status_code == 503
        # Draining stops new traffic through the load balancer, not requests that still arrive.
        assert client.post("/predict", json={"review": "fine"}).status_code == 200
    finally:
        lifecycle.reset()
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        ("/v2/models/other/ready", "'other'"),
        ("/v2/models/review-sentiment/versions/9/ready", "'review-sentiment:9'"),
        ("/v2/models/other/versions/1/ready", "'other:1'"),
        ("/v2/models/other", "'other'"),
        ("/v2/models/review-sentiment/versions/2", "'review-sentiment:2'"),
    ],
)
def test_v2_unknown_model_or_version_is_404(client: FlaskClient, path: str, wanted: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    body = response.get_json()
    assert body["code"] == "model_not_found"
    assert body["error"] == f"model {wanted} is not served here; this server serves 'review-sentiment'"


def test_v2_metadata_documents(client: FlaskClient) -> None:
    import reviewserve

    assert client.get("/v2").get_json() == {"name": "reviewserve", "version": reviewserve.__version__, "extensions": []}
    meta = client.get("/v2/models/review-sentiment/versions/1").get_json()
    assert meta == {
        "name": "review-sentiment",
        "versions": ["1"],
        "platform": "scikit-learn",
        "inputs": [{"name": "review", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probability", "datatype": "FP64", "shape": [-1]},
            {"name": "positive_probability", "datatype": "FP64", "shape": [-1]},
        ],
    }


def _metrics(client: FlaskClient) -> str:
    return client.get("/metrics").get_data(as_text=True)


def test_v2_inference_is_counted_in_the_model_metrics(fresh_client: FlaskClient) -> None:
    before = _metrics(fresh_client)
    assert sample(before, "reviewserve_predictions_total") is None  # nothing scored yet: no sample at all
    assert sample(before, "reviewserve_request_reviews_count") == 0.0  # an unlabelled histogram starts at zero
    data = ["I love it", "I hate it", "worst service ever"]
    body = {"inputs": [{"name": "review", "shape": [3], "datatype": "BYTES", "data": data}]}
    assert fresh_client.post(INFER, json=body).status_code == 200
    text = _metrics(fresh_client)
    assert sample(text, "reviewserve_predictions_total", label="positive") == 1.0
    assert sample(text, "reviewserve_predictions_total", label="negative") == 2.0
    assert sample(text, "reviewserve_request_reviews_count") == 1.0
    assert sample(text, "reviewserve_request_reviews_sum") == 3.0
    assert sample(text, "reviewserve_positive_probability_count") == 3.0


def test_model_metrics_values(fresh_client: FlaskClient, pipeline) -> None:
    fresh_client.post("/predict", json={"reviews": REVIEWS})
    text = _metrics(fresh_client)
    positives = [p[2] for p in oracle(pipeline, REVIEWS)]
    assert sample(text, "reviewserve_positive_probability_sum") == pytest.approx(sum(positives))
    # bucket upper bounds are 0.1 .. 1.0: the histogram must place each review by its positive probability
    for bound in ("0.1", "0.3", "0.8", "1.0"):
        expected = sum(p <= float(bound) for p in positives)
        assert sample(text, "reviewserve_positive_probability_bucket", le=bound) == expected
    for bound in (1, 2, 4, 8, 16, 256):  # one request of len(REVIEWS) reviews
        expected = 1.0 if len(REVIEWS) <= bound else 0.0
        assert sample(text, "reviewserve_request_reviews_bucket", le=f"{bound}.0") == expected, bound
    assert sample(text, "reviewserve_model_info", name="review-sentiment", version="1") == 1.0
    load_seconds = sample(text, "reviewserve_model_load_seconds")
    assert load_seconds is not None and 0 < load_seconds < 60


def test_http_metrics_are_labelled_by_route_template_not_raw_url(fresh_client: FlaskClient) -> None:
    for n in range(3):
        fresh_client.get(f"/no/such/path/{n}")
    fresh_client.post("/v2/models/review-sentiment/infer", json={"inputs": []})
    fresh_client.get("/v2/models/review-sentiment/versions/1/ready")
    text = _metrics(fresh_client)
    paths = label_values(text, "flask_http_request_duration_seconds_count", "path")
    assert paths == {"<unmatched>", "/v2/models/<name>/infer", "/v2/models/<name>/versions/<version>/ready"}
    assert sample(text, "flask_http_request_duration_seconds_count", path="<unmatched>", status="404") == 3.0
    assert sample(text, "flask_http_request_duration_seconds_count", path="/metrics") is None  # not self-counted


def test_refused_model_bodies(model_copy: Path) -> None:
    (model_copy / "model.skops").write_bytes(b"not a zip file at all")
    import hashlib
    import json

    card = json.loads((model_copy / "card.json").read_text())
    card["model_sha256"] = hashlib.sha256(b"not a zip file at all").hexdigest()
    (model_copy / "card.json").write_text(json.dumps(card))
    client = create_app(Settings(model_path=model_copy)).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    reason = ready.get_json()["reason"]
    assert ready.get_json() == {"status": "not ready", "reason": reason}
    assert reason.startswith("model not loaded: model file ") and "is not a readable skops archive" in reason
    v2 = client.get("/v2/health/ready")
    assert (v2.status_code, v2.get_json()) == (503, {"ready": False, "reason": reason})
    # No model: nothing can be checked against a name, so model readiness is the server's 503, not a 404.
    other = client.get("/v2/models/other/ready")
    assert (other.status_code, other.get_json()) == (503, {"ready": False, "name": "other", "reason": reason})
    text = _metrics(client)
    assert sample(text, "reviewserve_model_info") is None
    assert client.get("/healthz").get_json() == {"status": "ok"}

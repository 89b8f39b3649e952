"""The HTTP API through Flask's test client: contract, V2, every error case, request ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from reviewserve.settings import Settings
from reviewserve.web.app import create_app

SEED = {"review": "This Chatbot is amazing"}
INFER = "/v2/models/review-sentiment/infer"


SETTINGS = {"max_reviews": 4, "max_review_chars": 50, "max_body_bytes": 2048}


@pytest.fixture(scope="module")
def app(model_dir: Path) -> Flask:
    """One app per module: loading the model per test would dominate the mutation run (docs/mutation.md)."""
    return create_app(Settings(model_path=model_dir, **SETTINGS))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"]
    return error


def _v2_error(response, status: int, code: str) -> dict:
    """Under /v2 errors keep the Open Inference Protocol shape: ``error`` is the message string."""
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert isinstance(body["error"], str) and body["error"]
    assert body["code"] == code and body["request_id"]
    return body


def test_missing_content_type_is_read_as_json(client: FlaskClient) -> None:
    response = client.post("/predict", data=json.dumps(SEED))
    assert response.status_code == 200 and response.get_json()["prediction"] == "positive"


def test_v2_binary_extension_is_refused_clearly(client: FlaskClient) -> None:
    response = client.post(
        INFER, data=b"{}", headers={"Inference-Header-Content-Length": "2", "Content-Type": "application/json"}
    )
    assert "binary" in _v2_error(response, 415, "unsupported_media_type")["error"]


def test_seed_contract(client: FlaskClient) -> None:
    response = client.post("/predict", json=SEED)
    assert response.status_code == 200
    body = response.get_json()
    assert body["prediction"] == "positive"
    assert 0.5 < body["probability"] <= 1
    assert body["model"] == {"name": "review-sentiment", "version": "1"}


def test_list_answers_in_order(client: FlaskClient) -> None:
    reviews = ["awful, broke in a day", "I love this phone", "worst service ever"]
    body = client.post("/predict", json={"reviews": reviews}).get_json()
    assert [p["prediction"] for p in body["predictions"]] == ["negative", "positive", "negative"]
    single = [client.post("/predict", json={"review": r}).get_json()["probability"] for r in reviews]
    assert [p["probability"] for p in body["predictions"]] == single


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "needle"),
    [
        ({"data": "{not json", "content_type": "application/json"}, 400, "invalid_json", "not valid JSON"),
        ({"data": b"\xff\xfe", "content_type": "application/json"}, 400, "invalid_json", "UTF-8"),
        ({"data": "", "content_type": "application/json"}, 400, "invalid_json", "not valid JSON"),
        (
            {"data": "review=hi", "content_type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media_type",
            "application/json",
        ),
        ({"data": json.dumps(SEED), "content_type": "text/plain"}, 415, "unsupported_media_type", "text/plain"),
        ({"json": {}}, 422, "validation_error", "review: Field required"),
        ({"json": {"text": "hi"}}, 422, "validation_error", "review: Field required"),
        ({"json": {"review": 5}}, 422, "validation_error", "review: Input should be a valid string"),
        ({"json": {"review": None}}, 422, "validation_error", "review: Input should be a valid string"),
        ({"json": {"review": ["a"]}}, 422, "validation_error", "review: Input should be a valid string"),
        ({"json": {"review": ""}}, 422, "empty_review", "empty"),
        ({"json": {"review": " \n\t "}}, 422, "empty_review", "empty"),
        ({"json": ["a list"]}, 422, "validation_error", "JSON object"),
        ({"json": "a string"}, 422, "validation_error", "JSON object"),
        ({"json": {"reviews": []}}, 422, "validation_error", "reviews"),
        ({"json": {"reviews": "one"}}, 422, "validation_error", "reviews: Input should be a valid list"),
        ({"json": {"reviews": ["ok", 3]}}, 422, "validation_error", "reviews.1"),
        ({"json": {"reviews": ["ok", " "]}}, 422, "empty_review", "review 1 is empty"),
        ({"json": {"reviews": ["a"] * 5}}, 422, "too_many_reviews", "limit is 4"),
        ({"json": {"review": "a", "reviews": ["b"]}}, 422, "validation_error", "not both"),
        ({"json": {"review": "x" * 51}}, 413, "review_too_long", "limit is 50"),
        ({"json": {"reviews": ["ok", "x" * 51]}}, 413, "review_too_long", "review 1"),
        (
            {"data": json.dumps({"review": "y" * 3000}), "content_type": "application/json"},
            413,
            "payload_too_large",
            "",
        ),
    ],
)
def test_predict_errors(client: FlaskClient, kwargs: dict, status: int, code: str, needle: str) -> None:
    error = _error(client.post("/predict", **kwargs), status, code)
    assert needle in error["message"]


def test_unknown_path_and_wrong_method_are_json(client: FlaskClient) -> None:
    _error(client.get("/nope"), 404, "not_found")
    response = client.get("/predict")
    _error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]
    _error(client.delete("/healthz"), 405, "method_not_allowed")


def test_request_id_is_honoured_or_made(client: FlaskClient) -> None:
    response = client.post("/predict", json=SEED, headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    made = client.post("/predict", json=SEED).headers["X-Request-ID"]
    assert len(made) == 32
    hostile = client.get("/healthz", headers={"X-Request-ID": "x" * 500}).headers["X-Request-ID"]
    assert hostile != "x" * 500
    error = client.post("/predict", json={}, headers={"X-Request-ID": "req-9"}).get_json()["error"]
    assert error["request_id"] == "req-9"


def test_health_readiness_and_openapi(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["schemas"]["ReviewList"]["properties"]["reviews"]["maxItems"] == 4
    assert doc["components"]["schemas"]["SingleReview"]["properties"]["review"]["maxLength"] == 50


def test_v2_inference_and_metadata(client: FlaskClient) -> None:
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200
    meta = client.get("/v2/models/review-sentiment").get_json()
    assert meta["inputs"][0]["datatype"] == "BYTES"
    body = {
        "id": "r1",
        "inputs": [{"name": "review", "shape": [2], "datatype": "BYTES", "data": ["I love it", "I hate it"]}],
    }
    result = client.post(INFER, json=body).get_json()
    assert result["id"] == "r1" and result["model_name"] == "review-sentiment"
    outputs = {o["name"]: o for o in result["outputs"]}
    assert outputs["label"]["data"] == ["positive", "negative"]
    assert outputs["probability"]["datatype"] == "FP64" and outputs["probability"]["shape"] == [2]
    only = client.post(INFER, json={**body, "outputs": [{"name": "label"}]}).get_json()
    assert [o["name"] for o in only["outputs"]] == ["label"]
    versioned = client.post("/v2/models/review-sentiment/versions/1/infer", json=body)
    assert versioned.status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        (
            "/v2/models/other/infer",
            {"inputs": [{"name": "review", "shape": [1], "datatype": "BYTES", "data": ["x"]}]},
            404,
            "model_not_found",
        ),
        (
            "/v2/models/review-sentiment/versions/9/infer",
            {"inputs": [{"name": "review", "shape": [1], "datatype": "BYTES", "data": ["x"]}]},
            404,
            "model_not_found",
        ),
        (
            INFER,
            {"inputs": [{"name": "review", "shape": [1], "datatype": "FP32", "data": ["x"]}]},
            422,
            "validation_error",
        ),
        (
            INFER,
            {"inputs": [{"name": "review", "shape": [3], "datatype": "BYTES", "data": ["x"]}]},
            422,
            "validation_error",
        ),
        (
            INFER,
            {"inputs": [{"name": "review", "shape": [1], "datatype": "BYTES", "data": [1]}]},
            422,
            "validation_error",
        ),
        (
            INFER,
            {"inputs": [{"name": "review", "shape": [1], "datatype": "BYTES", "data": [" "]}]},
            422,
            "empty_review",
        ),
        (INFER, {"inputs": []}, 422, "validation_error"),
        (
            INFER,
            {"inputs": [{"name": "review", "shape": [5], "datatype": "BYTES", "data": ["x"] * 5}]},
            422,
            "too_many_reviews",
        ),
        (
            INFER,
            {
                "inputs": [{"name": "review", "shape": [1], "datatype": "BYTES", "data": ["x"]}],
                "outputs": [{"name": "nope"}],
            },
            422,
            "validation_error",
        ),
    ],
)
def test_v2_errors(client: FlaskClient, path: str, body: dict, status: int, code: str) -> None:
    _v2_error(client.post(path, json=body), status, code)


def test_v2_input_not_named_as_the_metadata_says_is_400(client: FlaskClient) -> None:
    """The model metadata names one input, `review`; any other name is refused with 400, not scored."""
    assert [i["name"] for i in client.get("/v2/models/review-sentiment").get_json()["inputs"]] == ["review"]
    body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["great"]}]}
    error = _v2_error(client.post(INFER, json=body), 400, "invalid_input")
    assert "'text'" in error["error"] and "'review'" in error["error"]


def test_tampered_model_keeps_server_alive_but_never_ready(model_copy: Path) -> None:
    with (model_copy / "model.skops").open("r+b") as handle:
        handle.seek(100)
        handle.write(b"tampered")
    client = create_app(Settings(model_path=model_copy)).test_client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "sha256" in ready.get_json()["reason"]
    error = _error(client.post("/predict", json=SEED), 503, "model_not_ready")
    assert "sha256" in error["message"]
    assert client.get("/v2/health/ready").status_code == 503
    assert client.get("/v2/models/review-sentiment/ready").status_code == 503
    _v2_error(
        client.post(INFER, json={"inputs": [{"name": "review", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}),
        503,
        "model_not_ready",
    )


def test_metrics_count_requests_and_predictions(model_dir: Path) -> None:
    client = create_app(Settings(model_path=model_dir, **SETTINGS)).test_client()  # its own counters
    client.post("/predict", json={"reviews": ["I love it", "I hate it", "great"]})
    client.post("/predict", json=SEED)
    text = client.get("/metrics").get_data(as_text=True)
    labels = 'method="POST",path="/predict",status="200",track="stable"'
    assert f"flask_http_request_duration_seconds_count{{{labels}}} 2.0" in text
    assert 'reviewserve_predictions_total{label="positive",track="stable"} 3.0' in text
    assert 'reviewserve_predictions_total{label="negative",track="stable"} 1.0' in text
    assert "reviewserve_positive_probability_count 4.0" in text
    assert "reviewserve_request_reviews_count 2.0" in text
    assert 'reviewserve_model_info{name="review-sentiment",track="stable",version="1"} 1.0' in text
    assert "reviewserve_model_load_seconds" in text


def test_track_labels_model_info_predictions_and_latency(model_dir: Path) -> None:
    """TRACK (issue 19): a canary pod's model info, predictions by label and request latency say `canary`."""
    client = create_app(Settings(model_path=model_dir, track="canary", **SETTINGS)).test_client()
    client.post("/predict", json={"reviews": ["I love it", "I hate it"]})
    text = client.get("/metrics").get_data(as_text=True)
    labels = 'method="POST",path="/predict",status="200",track="canary"'
    assert f"flask_http_request_duration_seconds_count{{{labels}}} 1.0" in text
    assert 'reviewserve_predictions_total{label="positive",track="canary"} 1.0' in text
    assert 'reviewserve_predictions_total{label="negative",track="canary"} 1.0' in text
    assert 'reviewserve_model_info{name="review-sentiment",track="canary",version="1"} 1.0' in text
    assert 'track="stable"' not in text


def test_unexpected_errors_are_json_500_with_request_id(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from reviewserve.model.predictor import Predictor

    def boom(self, texts):
        raise RuntimeError("bug")

    monkeypatch.setattr(Predictor, "predict", boom)
    response = client.post("/predict", json=SEED, headers={"X-Request-ID": "trace-me"})
    error = _error(response, 500, "internal_error")
    assert error["request_id"] == "trace-me" and "bug" not in error["message"]
    assert any(r.exc_info and getattr(r, "request_id", None) == "trace-me" for r in caplog.records)

"""The web layer's details that the mutation run showed unguarded: app settings, error bodies and handlers,
the metric catalogue, multiprocess metrics, the request log. Each test builds its own app, so the
construction-time code (handlers, hooks, exporter) is exercised by the tests that check it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.exceptions import HTTPException, ImATeapot

from reviewserve.settings import Settings
from reviewserve.web.app import create_app
from reviewserve.web.errors import APIError, http_error
from reviewserve.web.metrics import LATENCY_BUCKETS
from tests.promtext import label_values, sample

INFER = "/v2/models/review-sentiment/infer"


def _app(model_dir: Path, **settings: object) -> Flask:
    return create_app(Settings(model_path=model_dir, **settings))


@pytest.fixture
def client(model_dir: Path) -> FlaskClient:
    return _app(model_dir, max_reviews=4, max_body_bytes=2048).test_client()


def _tensor(data: list[str]) -> dict:
    return {"inputs": [{"name": "review", "shape": [len(data)], "datatype": "BYTES", "data": data}]}


def test_app_identity_and_document(client: FlaskClient) -> None:
    assert client.application.name == "reviewserve"  # also the Flask logger's name
    assert client.get("/openapi.json").get_json()["info"]["title"]


def test_body_limit_is_the_setting(model_dir: Path) -> None:
    client = _app(model_dir, max_body_bytes=1024).test_client()
    over = client.post("/predict", data=b" " * 1025, content_type="application/json")
    assert over.status_code == 413 and over.get_json()["error"]["code"] == "payload_too_large"
    assert client.post("/predict", json={"review": "x" * 900}).status_code == 200


def test_response_keys_keep_the_documented_order(client: FlaskClient) -> None:
    body = client.post("/predict", data='{"review": "good"}', content_type="application/json").get_data(as_text=True)
    assert body.index('"prediction"') < body.index('"probability"') < body.index('"positive_probability"')
    assert body.index('"positive_probability"') < body.index('"model"')
    v2 = client.post(INFER, json=_tensor(["good"])).get_data(as_text=True)
    assert v2.index('"model_name"') < v2.index('"model_version"') < v2.index('"outputs"')


def test_exactly_the_limit_of_reviews_is_accepted(client: FlaskClient) -> None:
    assert client.post("/predict", json={"reviews": ["good"] * 4}).status_code == 200
    assert client.post(INFER, json=_tensor(["good"] * 4)).status_code == 200


def test_validation_errors_carry_details_per_field(client: FlaskClient) -> None:
    error = client.post("/predict", json={"text": "hi"}).get_json()["error"]
    assert error["details"] == [{"field": "review", "problem": "Field required"}]
    assert error["message"] == "review: Field required"
    # several problems: each named, joined with "; "
    bad = {"inputs": [{"name": 1, "shape": [1], "datatype": "FP32", "data": ["x"]}]}
    body = client.post(INFER, json=bad).get_json()
    assert [d["field"] for d in body["details"]] == ["inputs.0.name", "inputs.0.datatype"]
    assert body["error"] == "; ".join(f"{d['field']}: {d['problem']}" for d in body["details"])
    # a body that is not an object has no field: the problem is the body itself
    whole = client.post(INFER, json=["x"]).get_json()
    problem = "Input should be a valid dictionary or instance of InferRequest"
    assert whole["details"] == [{"field": "body", "problem": problem}]


def test_errors_without_details_have_no_details_key(client: FlaskClient) -> None:
    error = client.post("/predict", json={"review": " "}).get_json()["error"]
    assert set(error) == {"code", "message", "request_id"}


def test_api_error_is_an_exception_with_its_message() -> None:
    error = APIError(422, "validation_error", "review: Field required", details=[{"field": "review"}])
    assert str(error) == "review: Field required"
    assert (error.status, error.code, error.details) == (422, "validation_error", [{"field": "review"}])


def test_allow_header_lists_the_methods(client: FlaskClient) -> None:
    # werkzeug keeps the methods in a set: the order varies between processes, the separator does not
    assert sorted(client.get("/predict").headers["Allow"].split(", ")) == ["OPTIONS", "POST"]
    assert sorted(client.delete("/healthz").headers["Allow"].split(", ")) == ["GET", "HEAD", "OPTIONS"]


def test_http_errors_outside_the_table_keep_a_code_and_a_message(client: FlaskClient) -> None:
    with client.application.test_request_context("/anything"):
        teapot = http_error(ImATeapot())
        assert teapot.status_code == 418
        assert teapot.get_json()["error"]["code"] == "http_error"
        nameless = ImATeapot()
        nameless.description = None
        assert http_error(nameless).get_json()["error"]["message"] == "I'm a teapot"
        bare = http_error(HTTPException(description="no status"))
        assert bare.status_code == 500 and bare.get_json()["error"]["message"] == "no status"


def test_unexpected_error_is_logged_and_answered_without_details(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from reviewserve.model.predictor import Predictor

    client = _app(model_dir).test_client()

    def boom(self, texts):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(Predictor, "predict", boom)
    response = client.post(INFER, json=_tensor(["x"]), headers={"X-Request-ID": "v2-boom"})
    assert response.status_code == 500
    assert response.get_json() == {
        "error": "internal server error; quote the request_id when reporting",
        "code": "internal_error",
        "request_id": "v2-boom",
    }
    [record] = [r for r in caplog.records if r.name == "reviewserve.web.errors"]
    assert record.getMessage() == "unhandled error" and record.request_id == "v2-boom"
    assert record.exc_info is not None and "secret internals" in str(record.exc_info[1])


# --- metrics ---------------------------------------------------------------------------------------

CATALOGUE = {
    "reviewserve_predictions": ("counter", "Reviews scored, by predicted label and deployment track."),
    "reviewserve_positive_probability": ("histogram", "Positive-class probability of scored reviews (a drift signal)."),
    "reviewserve_request_reviews": ("histogram", "Reviews per prediction request."),
    "reviewserve_model_info": ("gauge", "The served model (always 1), labelled by name, version and deployment track."),
    "reviewserve_model_load_seconds": ("gauge", "Seconds it took to verify and load the model."),
}


def test_metric_catalogue_names_types_and_help(client: FlaskClient) -> None:
    client.post("/predict", json={"review": "good"})
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))}
    for name, (kind, documentation) in CATALOGUE.items():
        assert (families[name].type, families[name].documentation) == (kind, documentation), name


def test_latency_histogram_uses_the_documented_buckets(client: FlaskClient) -> None:
    client.get("/healthz")
    text = client.get("/metrics").get_data(as_text=True)
    bounds = label_values(text, "flask_http_request_duration_seconds_bucket", "le")
    assert bounds == {str(b) for b in LATENCY_BUCKETS} | {"+Inf"}


def test_metrics_scrapes_are_not_counted(client: FlaskClient) -> None:
    for _ in range(3):
        text = client.get("/metrics").get_data(as_text=True)
    assert label_values(text, "flask_http_request_duration_seconds_count", "path") == set()
    assert sample(text, "flask_http_request_total") is None


def test_multiprocess_metrics_read_the_workers_files(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under gunicorn /metrics sums the per-worker files in PROMETHEUS_MULTIPROC_DIR, not this process's memory."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    worker_file = MmapedDict(str(tmp_path / "counter_4242.db"))  # what a worker with pid 4242 wrote
    labels = (("label", "track"), ("positive", "stable"))
    key = mmap_key("reviewserve_predictions", "reviewserve_predictions_total", *labels, "Reviews scored.")
    worker_file.write_value(key, 7.0, 0.0)
    worker_file.close()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    client = _app(model_dir).test_client()
    response = client.get("/metrics")
    assert response.status_code == 200
    assert sample(response.get_data(as_text=True), "reviewserve_predictions_total", label="positive") == 7.0


def test_multiprocess_metrics_need_a_folder(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="PROMETHEUS_MULTIPROC_DIR"):
        _app(model_dir)


# --- request log -------------------------------------------------------------------------------------


def _access(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "reviewserve.access"]


def test_request_log_line_for_v2_and_errors(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="reviewserve.access")
    client.post(INFER, json=_tensor(["a", "b", "c"]), headers={"X-Request-ID": "log-v2"})
    client.get("/nope", headers={"X-Request-ID": "log-404"})
    v2, missing = _access(caplog)
    assert v2.getMessage() == "request"
    assert (v2.method, v2.path, v2.status, v2.request_id, v2.reviews) == ("POST", INFER, 200, "log-v2", 3)
    assert v2.remote_addr == "127.0.0.1" and 0 < v2.duration_ms < 60_000
    assert (missing.method, missing.path, missing.status, missing.reviews) == ("GET", "/nope", 404, 0)


def test_request_ids(client: FlaskClient) -> None:
    longest = "a" * 128
    assert client.get("/healthz", headers={"X-Request-ID": longest}).headers["X-Request-ID"] == longest
    allowed = "Az09._:/+=-"
    assert client.get("/healthz", headers={"X-Request-ID": allowed}).headers["X-Request-ID"] == allowed
    for hostile in ["a" * 129, "has space", "new\\nline", ""]:
        made = client.get("/healthz", headers={"X-Request-ID": hostile}).headers["X-Request-ID"]
        assert made != hostile and len(made) == 32 and int(made, 16) >= 0
    first = client.get("/healthz").headers["X-Request-ID"]
    assert first != client.get("/healthz").headers["X-Request-ID"]


def test_request_log_counts_seed_reviews(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="reviewserve.access")
    client.post("/predict", json={"reviews": ["a", "b"]})
    client.post("/predict", json={"review": "a"})
    assert [(r.path, r.reviews) for r in _access(caplog)] == [("/predict", 2), ("/predict", 1)]


def test_logged_duration_runs_from_the_start_of_the_request(model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    from flask import g

    app = _app(model_dir)

    @app.before_request
    def started_ten_seconds_ago() -> None:  # runs after the request log's own hook
        g.started -= 10

    caplog.set_level(logging.INFO, logger="reviewserve.access")
    app.test_client().get("/healthz")
    [record] = _access(caplog)
    assert 10_000 <= record.duration_ms < 70_000


@pytest.mark.parametrize(
    ("path", "kwargs", "message"),
    [
        ("/predict", {"json": ["a"]}, "request body must be a JSON object with 'review' or 'reviews'"),
        ("/predict", {"json": {"review": "a", "reviews": ["b"]}}, "send either 'review' or 'reviews', not both"),
        ("/predict", {"json": {"reviews": ["a"] * 5}}, "reviews has 5 items; the limit is 4"),
        (INFER, {"json": _tensor(["a"] * 5)}, "inputs.0.data has 5 items; the limit is 4"),
        (
            INFER,
            {"json": {"inputs": [{"name": "review", "shape": [2, 2], "datatype": "BYTES", "data": ["a"]}]}},
            "inputs.0.shape [2, 2] does not match 1 data element(s)",
        ),
        (
            INFER,
            {"data": b"{}", "headers": {"Inference-Header-Content-Length": "2"}},
            "the V2 binary tensor data extension is not supported: send tensors as JSON (binary_data=False)",
        ),
        (
            "/predict",
            {"data": "hi", "content_type": "text/plain"},
            "Content-Type must be application/json, got 'text/plain'",
        ),
    ],
)
def test_error_messages_are_exact(client: FlaskClient, path: str, kwargs: dict, message: str) -> None:
    body = client.post(path, **kwargs).get_json()
    assert (body["error"] if path == INFER else body["error"]["message"]) == message


def test_model_load_is_logged_with_what_was_loaded(model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    from reviewserve.web.app import load_predictor

    caplog.set_level(logging.INFO, logger="reviewserve.web.app")
    predictor, error = load_predictor(Settings(model_path=model_dir, max_review_chars=7))
    assert predictor is not None and error is None
    assert predictor.max_chars == 7  # the setting reaches the predictor
    [record] = [r for r in caplog.records if r.name == "reviewserve.web.app"]
    assert record.getMessage() == "model loaded" and record.levelno == logging.INFO
    assert (record.model, record.version, record.sha256) == ("review-sentiment", "1", predictor.card.model_sha256)
    assert record.load_seconds == round(predictor.load_seconds, 3) > 0


def test_model_refusal_is_logged_with_the_path_and_reason(model_copy: Path, caplog: pytest.LogCaptureFixture) -> None:
    from reviewserve.web.app import load_predictor

    (model_copy / "card.json").write_text("{")
    predictor, error = load_predictor(Settings(model_path=model_copy))
    assert predictor is None and error
    [record] = [r for r in caplog.records if r.name == "reviewserve.web.app"]
    assert record.getMessage() == "model refused" and record.levelno == logging.ERROR
    assert (record.model_path, record.reason) == (str(model_copy), error)


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_a_tiny_review_limit_does_not_refuse_the_model(model_dir: Path, limit: int) -> None:
    client = _app(model_dir, max_review_chars=limit).test_client()
    assert client.get("/readyz").status_code == 200
    assert client.post("/predict", json={"review": "x" * (limit + 1)}).status_code == 413


def test_logged_duration_is_milliseconds_with_three_decimals(model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    from flask import g

    app = _app(model_dir)

    @app.before_request
    def started_long_ago() -> None:
        g.started -= 100_000  # seconds: a wrong unit or factor moves the logged value far out of range

    caplog.set_level(logging.INFO, logger="reviewserve.access")
    app.test_client().get("/healthz")
    [record] = _access(caplog)
    assert isinstance(record.duration_ms, float)
    assert 100_000_000 <= record.duration_ms < 100_060_000
    assert record.duration_ms == round(record.duration_ms, 3)

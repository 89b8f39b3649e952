"""Application factory: settings -> verified model -> blueprints, errors, metrics, request log."""

from __future__ import annotations

import logging

from flask import Flask

from reviewserve.model import ModelLoadError, Predictor
from reviewserve.model.store import open_predictor, redact
from reviewserve.settings import Settings, get_settings
from reviewserve.web import health, modelretry, predict, v2
from reviewserve.web.errors import register_error_handlers
from reviewserve.web.metrics import init_metrics
from reviewserve.web.openapi import openapi_document
from reviewserve.web.requestlog import init_request_log
from reviewserve.web.state import ServiceState

log = logging.getLogger(__name__)


# Scored once at load: a model that verifies but cannot score text is refused, not served to fail every request.
SMOKE_REVIEW = "a good product"


def load_predictor(settings: Settings) -> tuple[Predictor | None, str | None]:
    """Load the model named by the settings; on failure return the reason instead of raising.

    A refused model keeps the server up (liveness passes) but never ready, so the failure is visible
    in ``/readyz`` and the logs instead of as a crash loop (under gunicorn's preload a raise here
    would kill the master before it binds). The model comes through the store (MODEL_URI or MODEL_PATH).
    """
    source = redact(settings.model_source)
    extra = {"model_path": source}
    try:
        predictor = open_predictor(settings)
        check_scores(predictor)
    except (ModelLoadError, ValueError) as exc:
        log.error("model refused", extra={**extra, "reason": str(exc)})
        return None, str(exc)
    except Exception as exc:  # any other loader failure also refuses the model; the traceback goes to the log
        reason = f"model {source} could not be loaded: {type(exc).__name__}: {exc}"
        log.exception("model refused", extra={**extra, "reason": reason})
        return None, reason
    log.info(
        "model loaded",
        extra={
            "model": predictor.name,
            "version": predictor.version,
            "track": settings.track,
            "sha256": predictor.card.model_sha256,
            "load_seconds": round(predictor.load_seconds, 3),
        },
    )
    return predictor, None


def check_scores(predictor: Predictor) -> None:
    """Score :data:`SMOKE_REVIEW`; raise :class:`ModelLoadError` if the model cannot score text."""
    try:
        predictor.predict([SMOKE_REVIEW[: predictor.max_chars]])  # within MAX_REVIEW_CHARS, however small
    except Exception as exc:
        raise ModelLoadError(
            f"model {predictor.name}:{predictor.version} loaded but cannot score a review: {type(exc).__name__}: {exc}"
        ) from exc


def start_retry(service: ServiceState) -> modelretry.ModelRetry:
    """Retry loading the model in the background; on success serve it and run ``service.on_model_loaded``."""

    def attempt() -> str | None:
        predictor, error = load_predictor(service.settings)
        if predictor is None:
            service.load_error = error
            return error
        service.metrics.model_loaded(predictor)
        service.predictor, service.load_error = predictor, None
        return None

    def loaded() -> None:
        modelretry.freeze_heap()
        for hook in list(service.on_model_loaded):
            hook()

    thread = modelretry.ModelRetry(attempt, loaded, service.settings.model_retry_max_seconds)
    thread.start()
    return thread


def create_app(settings: Settings | None = None, retry: bool = False) -> Flask:
    """Build the Flask app for ``settings`` (default: from the environment).

    With ``retry`` (gunicorn, the dev server) a model that fails to load is retried in the background
    (see :mod:`reviewserve.web.modelretry`).
    """
    settings = settings or get_settings()
    app = Flask("reviewserve")
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    init_request_log(app)
    model_metrics = init_metrics(app, settings.track)
    predictor, load_error = load_predictor(settings)
    if predictor is not None:
        model_metrics.model_loaded(predictor)
    service = ServiceState(
        settings=settings,
        metrics=model_metrics,
        predictor=predictor,
        load_error=load_error,
        openapi=openapi_document(settings),
    )
    app.extensions["reviewserve"] = service
    modelretry.set_reason("")
    if predictor is None and retry:
        service.retry = start_retry(service)
    for blueprint in (predict.bp, v2.bp, health.bp):
        app.register_blueprint(blueprint)
    register_error_handlers(app)
    return app

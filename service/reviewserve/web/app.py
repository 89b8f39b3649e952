"""Application factory: settings -> verified model -> blueprints, errors, metrics, request log."""

from __future__ import annotations

import logging

from flask import Flask

from reviewserve.model import ModelLoadError, Predictor
from reviewserve.settings import Settings, get_settings
from reviewserve.web import health, predict, v2
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
    would kill the master before it binds).
    """
    extra = {"model_path": str(settings.model_path)}
    try:
        predictor = Predictor.load(settings.model_path, max_chars=settings.max_review_chars)
        check_scores(predictor)
    except (ModelLoadError, ValueError) as exc:
        log.error("model refused", extra={**extra, "reason": str(exc)})
        return None, str(exc)
    except Exception as exc:  # any other loader failure also refuses the model; the traceback goes to the log
        reason = f"model {settings.model_path} could not be loaded: {type(exc).__name__}: {exc}"
        log.exception("model refused", extra={**extra, "reason": reason})
        return None, reason
    log.info(
        "model loaded",
        extra={
            "model": predictor.name,
            "version": predictor.version,
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


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()
    app = Flask("reviewserve")
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    init_request_log(app)
    model_metrics = init_metrics(app)
    predictor, load_error = load_predictor(settings)
    if predictor is not None:
        model_metrics.model_loaded(predictor)
    app.extensions["reviewserve"] = ServiceState(
        settings=settings,
        metrics=model_metrics,
        predictor=predictor,
        load_error=load_error,
        openapi=openapi_document(settings),
    )
    for blueprint in (predict.bp, v2.bp, health.bp):
        app.register_blueprint(blueprint)
    register_error_handlers(app)
    return app

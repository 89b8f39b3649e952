"""What the app holds between requests: settings, the predictor (or why it failed to load), metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from reviewserve.model import Predictor
from reviewserve.settings import Settings
from reviewserve.web import lifecycle, modelretry
from reviewserve.web.errors import APIError
from reviewserve.web.metrics import ModelMetrics


@dataclass
class ServiceState:
    """Per-app state, stored as ``app.extensions["reviewserve"]``."""

    settings: Settings
    metrics: ModelMetrics
    predictor: Predictor | None = None
    load_error: str | None = None
    openapi: dict[str, Any] = field(default_factory=dict)
    retry: modelretry.ModelRetry | None = None  # the background retry of a model that failed to load
    on_model_loaded: list[Callable[[], None]] = field(default_factory=list)  # run once a retry succeeds

    def model_error(self) -> str | None:
        """Why the model is not loaded: the latest retry's reason (shared with the master) or the first one."""
        return modelretry.reason() or self.load_error

    def not_ready_reason(self) -> str | None:
        """Why the server should not receive traffic, or None when it is ready."""
        if self.predictor is None:
            return f"model not loaded: {self.model_error()}"
        if lifecycle.is_draining():
            return "shutting down"
        return None

    def require_predictor(self) -> Predictor:
        """The predictor, or a 503 APIError if the model is not loaded."""
        if self.predictor is None:
            raise APIError(503, "model_not_ready", f"model not loaded: {self.model_error()}")
        return self.predictor


def state() -> ServiceState:
    """The current app's :class:`ServiceState`."""
    return current_app.extensions["reviewserve"]

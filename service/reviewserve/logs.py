"""Structured JSON logging on stdout, one configuration for the CLI, the app and gunicorn."""

from __future__ import annotations

import logging.config
from typing import Any

JSON_FORMATTER = "pythonjsonlogger.json.JsonFormatter"
FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict: JSON lines on stdout (also used as gunicorn's logconfig_dict)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": JSON_FORMATTER,
                "fmt": FIELDS,
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
            }
        },
        "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
        "root": {"level": level, "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["stdout"], "propagate": False},
            "gunicorn.access": {"level": "WARNING", "handlers": ["stdout"], "propagate": False},
        },
    }


def configure_logging(level: str = "INFO") -> None:
    """Apply :func:`logging_config`."""
    logging.config.dictConfig(logging_config(level))

"""Structured JSON logging on stdout, one configuration for the CLI, the app and gunicorn."""

from __future__ import annotations

import logging.config
import re
from typing import Any

JSON_FORMATTER = "pythonjsonlogger.json.JsonFormatter"
FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class StripAnsi(logging.Filter):
    """Drop terminal colour codes from messages (werkzeug's dev server colours its request lines):
    a JSON log line must hold plain text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "\x1b" in message:
            record.msg, record.args = ANSI_ESCAPE.sub("", message), None
        return True


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
        "filters": {"plain": {"()": StripAnsi}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
                "filters": ["plain"],
            }
        },
        "root": {"level": level, "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["stdout"], "propagate": False},
            "gunicorn.access": {"level": "WARNING", "handlers": ["stdout"], "propagate": False},
        },
    }


def configure_logging(level: str = "INFO") -> None:
    """Apply :func:`logging_config`."""
    logging.config.dictConfig(logging_config(level))

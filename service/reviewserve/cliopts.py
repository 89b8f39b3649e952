"""Pieces shared by every ``reviewserve`` command group: the ``--model`` option and settings that fail cleanly."""

from __future__ import annotations

import click
from pydantic import ValidationError

from reviewserve.settings import Settings

MODEL_HELP = "Model folder, or URL of one (s3://, https://) [default: MODEL_URI, else MODEL_PATH]."

model_option = click.option("--model", "model_dir", default=None, metavar="URI", help=MODEL_HELP)


def load_settings() -> Settings:
    """The settings from the environment, or a clear CLI error naming what is wrong."""
    try:
        return Settings()
    except ValidationError as exc:
        raise click.ClickException(f"invalid configuration:\n{exc}") from None

"""Pieces shared by every ``reviewserve`` command group: the ``--model`` option and settings that fail cleanly."""

from __future__ import annotations

from pathlib import Path

import click
from pydantic import ValidationError

from reviewserve.settings import Settings

model_option = click.option(
    "--model",
    "model_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Model folder [default: MODEL_PATH].",
)


def load_settings() -> Settings:
    """The settings from the environment, or a clear CLI error naming what is wrong."""
    try:
        return Settings()
    except ValidationError as exc:
        raise click.ClickException(f"invalid configuration:\n{exc}") from None

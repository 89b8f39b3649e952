"""Pieces shared by every ``reviewserve`` command group: the ``--model`` option and settings that fail cleanly."""

from __future__ import annotations

import json
from typing import Any

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


class SummaryOnUsageError(click.Command):
    """A command whose last stdout line is its JSON summary for every exit code, click's usage error (2) included.

    Scripts read the summary of ``score`` and ``stream produce`` from the last stdout line; on a mistyped flag or a
    bad value nothing has run, so the summary is ``usage_summary`` (its zero counts) with ``"error"``; the usage
    message still goes to stderr as click prints it.
    """

    def __init__(self, *args: Any, usage_summary: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.usage_summary = usage_summary or {}

    def _echo_summary(self, error: click.UsageError) -> None:
        click.echo(json.dumps({**self.usage_summary, "error": error.format_message()}))

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        """Parse the command line (a usage error found here prints the summary, then click's message)."""
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            self._echo_summary(exc)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command (a bad value it finds, such as ``--shard 2/2``, prints the summary too)."""
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            self._echo_summary(exc)
            raise

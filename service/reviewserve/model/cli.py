"""``reviewserve model push | list``: publish model folders to a store and see what it holds (model/store.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from reviewserve.cliopts import load_settings


@click.group()
def model() -> None:
    """Publish models to a store (a folder or s3://...) and list its versions."""


@model.command()
@click.argument("model_dir", metavar="DIR", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("store", metavar="URI")
def push(model_dir: Path, store: str) -> None:
    """Verify the model folder DIR and upload it to URI/NAME/VERSION/ (from its card); print that URI.

    A version already in the store is never overwritten (exit 1). s3:// stores use the environment's
    credentials and AWS_ENDPOINT_URL (MinIO and other S3-compatible stores).
    """
    from reviewserve.model import ModelLoadError
    from reviewserve.model.store import push as push_model

    settings = load_settings()
    try:
        uri = push_model(model_dir, store, timeout=settings.model_fetch_timeout)
    except ModelLoadError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(uri)


@model.command("list")
@click.argument("store", metavar="URI")
def list_command(store: str) -> None:
    """List the versions under URI (a store, or one model's folder in it): one JSON line each, oldest first,
    with the created time and the held-out metrics of its card."""
    from reviewserve.model import ModelLoadError
    from reviewserve.model.store import list_versions

    settings = load_settings()
    try:
        for version in list_versions(store, timeout=settings.model_fetch_timeout):
            click.echo(json.dumps(version))
    except ModelLoadError as exc:
        raise click.ClickException(str(exc)) from None

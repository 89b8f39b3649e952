"""``reviewserve score`` and ``reviewserve load-reviews``: the batch scoring commands (added to the main CLI)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reviewserve.cliopts import SummaryOnUsageError, load_settings, model_option
from reviewserve.logs import configure_logging
from reviewserve.settings import Settings

if TYPE_CHECKING:
    from reviewserve.batch.job import Summary


def _score_summary_exit(summary: dict[str, object], code: int) -> None:
    click.echo(json.dumps(summary, default=str))
    sys.exit(code)


@click.command(
    cls=SummaryOnUsageError,
    usage_summary={"read": 0, "scored": 0, "failed": 0, "exit_code": 2},  # nothing ran
)
@click.option(
    "--source",
    envvar="SCORE_SOURCE",
    show_envvar=True,
    default="sqlite:///reviews.db",
    show_default=True,
    help="SQLAlchemy database URL (postgresql://..., sqlite:///file.db), or a file path/glob/URL "
    "(data/*.csv, s3://bucket/logs/*.parquet) of CSV, JSON Lines or Parquet files.",
)
@click.option(
    "--table",
    envvar="SCORE_TABLE",
    show_envvar=True,
    default="reviews",
    show_default=True,
    help="Table holding the reviews.",
)
@click.option(
    "--id-column",
    envvar="SCORE_ID_COLUMN",
    show_envvar=True,
    default="id",
    show_default=True,
    help="Key column (integer, text or UUID).",
)
@click.option(
    "--text-column",
    envvar="SCORE_TEXT_COLUMN",
    show_envvar=True,
    default="text",
    show_default=True,
    help="Column with the review text.",
)
@click.option(
    "--predictions-table",
    envvar="SCORE_PREDICTIONS_TABLE",
    show_envvar=True,
    default="predictions",
    show_default=True,
    help="Table the predictions go to (created if missing).",
)
@click.option(
    "--output",
    envvar="SCORE_OUTPUT",
    show_envvar=True,
    default=None,
    help="Files mode: output folder or URL [default: predictions/ beside the inputs].",
)
@click.option(
    "--shard",
    envvar="SCORE_SHARD",
    show_envvar=True,
    default="0/1",
    show_default=True,
    help="Score only shard K of N (0 <= K < N); N jobs with K = 0..N-1 cover every row once.",
)
@click.option(
    "--chunk-size",
    envvar="SCORE_CHUNK_SIZE",
    show_envvar=True,
    type=click.IntRange(1, 100_000),
    default=1000,
    show_default=True,
    help="Rows per read, predict call and commit.",
)
@click.option(
    "--retry-for",
    envvar="SCORE_RETRY_FOR",
    show_envvar=True,
    type=click.FloatRange(0),
    default=60.0,
    show_default=True,
    help="Seconds to ride out a database outage (lost connection, restart, SQLite 'database is locked'): "
    "retried with backoff, the chunk in flight redone; past it the job exits 1.",
)
@click.option("--retry-errors", is_flag=True, help="Also rescore rows whose earlier result was an error.")
@click.option("--dry-run", is_flag=True, help="Only count what would be scored; write nothing.")
@click.option(
    "--pushgateway",
    envvar="PUSHGATEWAY_URL",
    show_envvar=True,
    default=None,
    help="Prometheus Pushgateway URL to push the run's metrics to.",
)
@click.option(
    "--pushgateway-job",
    envvar="PUSHGATEWAY_JOB",
    show_envvar=True,
    default="reviewserve_score",
    show_default=True,
    help="Pushgateway job name.",
)
@click.option(
    "--progress/--no-progress",
    "progress",
    default=None,
    help="Progress bar [default: on a terminal; else a JSON log line per chunk].",
)
@model_option
def score(**options: Any) -> None:
    """Score the reviews of a table (or files) still missing a prediction of this model version.

    Exit codes: 0 every row scored (or nothing to do), 1 the job failed (source, database, storage,
    model), 2 bad command line, 3 finished but some rows could not be scored (status 'error').
    """
    import signal
    import time

    from reviewserve.batch.job import EXIT_FAILED
    from reviewserve.batch.shard import Shard

    settings = load_settings()
    configure_logging(settings.log_level)
    try:
        shard = Shard.parse(options["shard"])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--shard") from None

    def stopped(signum: int, _frame: object) -> None:
        raise SystemExit(f"stopped by signal {signum} ({signal.Signals(signum).name})")

    # SIGTERM (Kubernetes, docker stop) and SIGINT (Ctrl-C) end the run the same way: the chunk in
    # flight is rolled back, and the summary of what was committed is still the last stdout line.
    previous = {sig: signal.signal(sig, stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
    started = time.monotonic()
    partial: list[Summary] = []  # run_job hands its summary over as soon as it exists
    summary: dict[str, Any]
    code = EXIT_FAILED
    try:
        result = _run_score(settings, shard, options, partial.append)
        summary, code = result.as_dict(), result.exit_code
    except SystemExit as exc:
        message = str(exc)
        click.echo(f"Error: {message}", err=True)
        summary = failed_summary(partial[0] if partial else None, shard, message)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if options["pushgateway"]:
        from reviewserve.batch.pushgateway import push_run

        push_run(
            options["pushgateway"],
            job=options["pushgateway_job"],
            grouping={"source": _push_source(options), "shard": str(shard)},
            summary=summary,
            exit_code=code,
            duration=time.monotonic() - started,
        )
    _score_summary_exit(summary, code)


def failed_summary(partial: Summary | None, shard: Any, message: str) -> dict[str, Any]:
    """The summary of a run that stopped: what was committed before it stopped, exit code 1, the reason."""
    from reviewserve.batch.job import EXIT_FAILED

    data = partial.as_dict() if partial is not None else {"shard": str(shard), "read": 0, "scored": 0, "failed": 0}
    return {**data, "exit_code": EXIT_FAILED, "error": message}


def _push_source(options: dict[str, Any]) -> str:
    """The Pushgateway group's source label: the table, or the files' path pattern (never a database URL)."""
    from reviewserve.batch.files import is_file_source

    return options["source"].rsplit("/", 1)[-1] if is_file_source(options["source"]) else options["table"]


def _run_score(settings: Settings, shard: Any, options: dict[str, Any], started: Any) -> Any:
    """Load the model, open the source, run the job; any expected failure becomes SystemExit(message)."""
    from sqlalchemy.exc import SQLAlchemyError

    from reviewserve.batch.files import FilesError, FileStore, is_file_source
    from reviewserve.batch.job import run_job
    from reviewserve.batch.retry import Unavailable, first_line
    from reviewserve.batch.sql import SourceError
    from reviewserve.model import ModelLoadError
    from reviewserve.model.store import open_predictor

    try:
        predictor = open_predictor(settings, options["model_dir"])
    except ModelLoadError as exc:
        raise SystemExit(str(exc)) from None
    source = options["source"]
    store: Any = None
    try:
        if is_file_source(source):
            if shard.active:
                raise FilesError("--shard applies to database sources; split files between jobs by glob")
            store = FileStore(
                source,
                output=options["output"],
                id_column=options["id_column"],
                text_column=options["text_column"],
                model_name=predictor.name,
                model_version=predictor.version,
            )
        else:
            store = _open_sql_store(source, shard, predictor, options)
        return run_job(
            store,
            predictor,
            chunk_size=options["chunk_size"],
            shard=str(shard),
            dry_run=options["dry_run"],
            bar=options["progress"],
            retry_for=options["retry_for"],
            started=started,
        )
    except (SourceError, FilesError, Unavailable) as exc:
        raise SystemExit(str(exc)) from None
    except (SQLAlchemyError, OSError) as exc:
        raise SystemExit(first_line(exc)) from None
    finally:
        if store is not None:
            store.close()


def _open_sql_store(source: str, shard: Any, predictor: Any, options: dict[str, Any]) -> Any:
    """Reflect the source table and create/check the predictions table, retrying a transient error
    (a database restarting when the job starts, shards starting at once on SQLite) for ``--retry-for``."""
    from reviewserve.batch.retry import Retry
    from reviewserve.batch.sql import SqlStore, is_transient

    retry = Retry(options["retry_for"])
    while True:
        store = None
        try:
            store = SqlStore(
                source,
                options["table"],
                id_column=options["id_column"],
                text_column=options["text_column"],
                predictions=options["predictions_table"],
                model_name=predictor.name,
                model_version=predictor.version,
                shard=shard,
                retry_errors=options["retry_errors"],
            )
            if options["dry_run"]:
                store.register_source(check_only=True)
            else:
                store.create_predictions_table()
            return store
        except Exception as exc:
            if store is not None:
                store.close()
            if not is_transient(exc):
                raise
            retry.wait(exc)


@click.command("load-reviews")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--target",
    envvar="SCORE_SOURCE",
    show_envvar=True,
    default="sqlite:///reviews.db",
    show_default=True,
    help="SQLAlchemy database URL to load into.",
)
@click.option("--table", default="reviews", show_default=True, help="Table to create or append to.")
@click.option("--id-column", default="id", show_default=True, help="Integer key column of a new table.")
@click.option("--text-column", default="text", show_default=True, help="Text column (and the CSV column to read).")
@click.option("--replace", is_flag=True, help="Drop the table first.")
@click.option("--append", is_flag=True, help="Add to a table that already holds reviews.")
def load_reviews_command(
    files: tuple[Path, ...], target: str, table: str, id_column: str, text_column: str, replace: bool, append: bool
) -> None:
    """Load review FILES (text<TAB>label .txt/.tsv, or CSV with a header) into a table.

    A table that already holds reviews is refused without --replace or --append (no doubled reviews).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from reviewserve.batch.load import load_reviews
    from reviewserve.batch.sql import SourceError

    try:
        count = load_reviews(
            list(files), target, table, id_column=id_column, text_column=text_column, replace=replace, append=append
        )
    except (SourceError, SQLAlchemyError, OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"table": table, "loaded": count}))

"""The ``reviewserve`` command: train | evaluate | serve | predict | score | load-reviews | stream."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from reviewserve.logs import configure_logging
from reviewserve.settings import Settings

GUNICORN_ARGS = ["--config", "python:reviewserve.web.gunicorn_conf", "reviewserve.web.wsgi:app"]

# serve flag -> environment variable (the flags only override the documented variables)
SERVE_OPTIONS = {
    "port": "PORT",
    "workers": "WORKERS",
    "worker_class": "WORKER_CLASS",
    "worker_connections": "WORKER_CONNECTIONS",
    "threads": "THREADS",
    "model_path": "MODEL_PATH",
    "max_body_bytes": "MAX_BODY_BYTES",
    "max_reviews": "MAX_REVIEWS",
    "max_review_chars": "MAX_REVIEW_CHARS",
    "log_level": "LOG_LEVEL",
    "timeout": "TIMEOUT",
    "graceful_timeout": "GRACEFUL_TIMEOUT",
    "shutdown_delay": "SHUTDOWN_DELAY",
    "keepalive": "KEEPALIVE",
    "keepalive_requests": "KEEPALIVE_REQUESTS",
    "max_requests": "MAX_REQUESTS",
    "max_requests_jitter": "MAX_REQUESTS_JITTER",
    "metrics_dir": "PROMETHEUS_MULTIPROC_DIR",
}


model_option = click.option(
    "--model",
    "model_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Model folder [default: MODEL_PATH].",
)


def data_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The repeatable ``--data FILE`` option of train and evaluate."""
    return click.option(
        "--data", "data", multiple=True, required=True, type=click.Path(exists=True, path_type=Path), help=help_text
    )


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise click.ClickException(f"invalid configuration:\n{exc}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="reviewserve")
def main() -> None:
    """Review sentiment model: train it, evaluate it, serve it over HTTP, score texts."""


@main.command()
@data_option("Labelled file: text<TAB>label (.tsv/.txt) or CSV with a header. Repeatable.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Model folder to write.")
@click.option("--name", default="review-sentiment", show_default=True, help="Model name for the card.")
@click.option("--version", "model_version", default="1", show_default=True, help="Model version for the card.")
@click.option(
    "--eval",
    "eval_files",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Held-out labelled file to evaluate on after training. Repeatable.",
)
@click.option("--text-column", default="text", show_default=True, help="CSV column with the review text.")
@click.option("--label-column", default="label", show_default=True, help="CSV column with the label (0/1).")
@click.option("--c", "c_value", type=float, default=None, help="Inverse regularisation strength.")
def train(
    data: tuple[Path, ...],
    out: Path,
    name: str,
    model_version: str,
    eval_files: tuple[Path, ...],
    text_column: str,
    label_column: str,
    c_value: float | None,
) -> None:
    """Train a model on labelled files and write it with its card."""
    from reviewserve.model.evaluate import evaluate as run_evaluation
    from reviewserve.model.train import train as run_training

    configure_logging("INFO")
    card = run_training(
        list(data),
        out,
        name=name,
        version=model_version,
        params={"C": c_value} if c_value is not None else None,
        text_column=text_column,
        label_column=label_column,
    )
    click.echo(f"wrote {out / card.model_file} ({card.model_bytes} bytes, sha256 {card.model_sha256})")
    if eval_files:
        click.echo(json.dumps(run_evaluation(out, list(eval_files)), indent=2))


@main.command()
@model_option
@data_option("Labelled held-out file. Repeatable; each is reported separately.")
@click.option("--min-accuracy", type=float, default=None, help="Exit 1 if any file scores below this.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG report.")
def evaluate(model_dir: Path | None, data: tuple[Path, ...], min_accuracy: float | None, no_plots: bool) -> None:
    """Evaluate a model; write metrics into its card and a report with plots into MODEL/evaluation/."""
    from reviewserve.model.evaluate import evaluate as run_evaluation

    model_dir = model_dir or _settings().model_path
    results = run_evaluation(model_dir, list(data), plots=not no_plots)
    click.echo(json.dumps(results, indent=2))
    if min_accuracy is not None:
        low = {k: v["accuracy"] for k, v in results.items() if v["accuracy"] < min_accuracy}
        if low:
            raise click.ClickException(f"accuracy below {min_accuracy}: {low}")


@main.command()
@click.option("--port", type=int, help="Listen port [env PORT, default 9696].")
@click.option("--workers", type=int, help="Worker processes [env WORKERS, default: usable CPUs].")
@click.option(
    "--worker-class", type=click.Choice(["gevent", "gthread"]), help="Worker type [env WORKER_CLASS, default gevent]."
)
@click.option("--worker-connections", type=int, help="Connections per gevent worker [env WORKER_CONNECTIONS].")
@click.option("--threads", type=int, help="Threads per gthread worker [env THREADS, default 2].")
@click.option("--model-path", type=click.Path(path_type=Path), help="Model folder [env MODEL_PATH].")
@click.option("--max-body-bytes", type=int, help="Body limit [env MAX_BODY_BYTES].")
@click.option("--max-reviews", type=int, help="Reviews per request [env MAX_REVIEWS].")
@click.option("--max-review-chars", type=int, help="Characters per review [env MAX_REVIEW_CHARS].")
@click.option("--log-level", type=str, help="Log level [env LOG_LEVEL].")
@click.option("--timeout", type=int, help="Worker timeout, s [env TIMEOUT].")
@click.option("--graceful-timeout", type=int, help="Drain time on SIGTERM, s [env GRACEFUL_TIMEOUT].")
@click.option("--shutdown-delay", type=float, help="Not-ready time before draining, s [env SHUTDOWN_DELAY].")
@click.option("--keepalive", type=int, help="Close a connection silent this long, s [env KEEPALIVE].")
@click.option("--keepalive-requests", type=int, help="Requests per connection [env KEEPALIVE_REQUESTS].")
@click.option("--max-requests", type=int, help="Recycle a worker after N requests [env MAX_REQUESTS].")
@click.option("--max-requests-jitter", type=int, help="Random spread on --max-requests [env MAX_REQUESTS_JITTER].")
@click.option("--metrics-dir", type=click.Path(path_type=Path), help="Metrics folder [env PROMETHEUS_MULTIPROC_DIR].")
@click.option("--dev", is_flag=True, help="Local development only: Flask's reloading debug server, 127.0.0.1.")
def serve(dev: bool, **options: object) -> None:
    """Serve the model over HTTP with gunicorn (replaces this process, so signals reach gunicorn)."""
    for option, variable in SERVE_OPTIONS.items():
        if options.get(option) is not None:
            os.environ[variable] = str(options[option])
    settings = _settings()  # fail fast on bad configuration
    if dev:
        from reviewserve.web.app import create_app

        configure_logging(settings.log_level)
        create_app(settings).run(host="127.0.0.1", port=settings.port, debug=True)
        return
    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", *GUNICORN_ARGS])


@main.command()
@click.argument("texts", nargs=-1)
@model_option
def predict(texts: tuple[str, ...], model_dir: Path | None) -> None:
    """Score TEXTS (or one text per line of stdin); print one JSON object per text."""
    from reviewserve.model import InvalidText, ModelLoadError, Predictor

    settings = _settings()
    try:
        predictor = Predictor.load(model_dir or settings.model_path, max_chars=settings.max_review_chars)
    except ModelLoadError as exc:
        raise click.ClickException(str(exc)) from None
    lines = list(texts) or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    try:
        predictions = predictor.predict(lines)
    except InvalidText as exc:
        raise click.ClickException(str(exc)) from None
    for text, p in zip(lines, predictions, strict=True):
        click.echo(
            json.dumps(
                {
                    "review": text,
                    "prediction": p.label,
                    "probability": round(p.probability, 6),
                    "positive_probability": round(p.positive_probability, 6),
                }
            )
        )


# ------------------------------------------------------------------ batch ---


def _score_summary_exit(summary: dict[str, object], code: int) -> None:
    click.echo(json.dumps(summary, default=str))
    sys.exit(code)


@main.command()
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

    settings = _settings()
    configure_logging(settings.log_level)
    try:
        shard = Shard.parse(options["shard"])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--shard") from None

    def terminated(signum: int, _frame: object) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    previous_handler = signal.signal(signal.SIGTERM, terminated)
    started = time.monotonic()
    summary: dict[str, Any] | None = None
    code = EXIT_FAILED
    try:
        result = _run_score(settings, shard, options)
        summary, code = result.as_dict(), result.exit_code
    except SystemExit as exc:
        click.echo(f"Error: {exc}", err=True)
    finally:
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
        signal.signal(signal.SIGTERM, previous_handler)
    if summary is None:
        sys.exit(EXIT_FAILED)
    _score_summary_exit(summary, code)


def _push_source(options: dict[str, Any]) -> str:
    """The Pushgateway group's source label: the table, or the files' path pattern (never a database URL)."""
    from reviewserve.batch.files import is_file_source

    return options["source"].rsplit("/", 1)[-1] if is_file_source(options["source"]) else options["table"]


def _run_score(settings: Settings, shard: Any, options: dict[str, Any]) -> Any:
    """Load the model, open the source, run the job; any expected failure becomes SystemExit(message)."""
    from sqlalchemy.exc import SQLAlchemyError

    from reviewserve.batch.files import FilesError, FileStore, is_file_source
    from reviewserve.batch.job import run_job
    from reviewserve.batch.sql import SourceError, SqlStore
    from reviewserve.model import ModelLoadError, Predictor

    try:
        predictor = Predictor.load(options["model_dir"] or settings.model_path, max_chars=settings.max_review_chars)
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
            if not options["dry_run"]:
                store.create_predictions_table()
        return run_job(
            store,
            predictor,
            chunk_size=options["chunk_size"],
            shard=str(shard),
            dry_run=options["dry_run"],
            bar=options["progress"],
        )
    except (SourceError, FilesError) as exc:
        raise SystemExit(str(exc)) from None
    except (SQLAlchemyError, OSError) as exc:
        raise SystemExit(f"{type(exc).__name__}: {exc}") from None
    finally:
        if store is not None:
            store.close()


@main.command("load-reviews")
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
def load_reviews_command(
    files: tuple[Path, ...], target: str, table: str, id_column: str, text_column: str, replace: bool
) -> None:
    """Load review FILES (text<TAB>label .txt/.tsv, or CSV with a header) into a table."""
    from sqlalchemy.exc import SQLAlchemyError

    from reviewserve.batch.load import load_reviews
    from reviewserve.batch.sql import SourceError

    try:
        count = load_reviews(list(files), target, table, id_column=id_column, text_column=text_column, replace=replace)
    except (SourceError, SQLAlchemyError, OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"table": table, "loaded": count}))



from reviewserve.stream.cli import stream  # noqa: E402  (the stream commands live in their own package)

main.add_command(stream)

if __name__ == "__main__":
    main()

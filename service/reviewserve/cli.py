"""The ``reviewserve`` command: train | evaluate | serve | predict | score | load-reviews | stream."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from reviewserve.cliopts import load_settings, model_option
from reviewserve.logs import configure_logging

GUNICORN_ARGS = ["--config", "python:reviewserve.web.gunicorn_conf", "reviewserve.web.wsgi:app"]

# serve flag -> environment variable (the flags only override the documented variables)
SERVE_OPTIONS = {
    "port": "PORT",
    "workers": "WORKERS",
    "worker_class": "WORKER_CLASS",
    "worker_connections": "WORKER_CONNECTIONS",
    "threads": "THREADS",
    "model_path": "MODEL_PATH",
    "model_uri": "MODEL_URI",
    "model_sha256": "MODEL_SHA256",
    "model_cache_dir": "MODEL_CACHE_DIR",
    "track": "TRACK",
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
    "health_port": "HEALTH_PORT",
    "max_queue_ms": "MAX_QUEUE_MS",
    "retry_after_seconds": "RETRY_AFTER_SECONDS",
}


def data_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The repeatable ``--data FILE`` option of train and evaluate."""
    return click.option(
        "--data", "data", multiple=True, required=True, type=click.Path(exists=True, path_type=Path), help=help_text
    )


text_column_option = click.option(
    "--text-column", default="text", show_default=True, help="CSV column with the review text (also for --eval files)."
)
label_column_option = click.option(
    "--label-column",
    default="label",
    show_default=True,
    help="CSV column with the label: 0/1, negative/positive or neg/pos (also for --eval files).",
)


def plots_wanted(no_plots: bool) -> bool:
    """Draw the PNG report unless told not to; without matplotlib say so in one line and go on."""
    from reviewserve.model.evaluate import plotting_available

    if no_plots:
        return False
    if not plotting_available():
        click.echo(
            "plots skipped: matplotlib is not installed (pip install 'reviewserve[eval]'; make install has it)",
            err=True,
        )
        return False
    return True


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
@text_column_option
@label_column_option
@click.option("--c", "c_value", type=float, default=None, help="Inverse regularisation strength.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG report of --eval.")
def train(
    data: tuple[Path, ...],
    out: Path,
    name: str,
    model_version: str,
    eval_files: tuple[Path, ...],
    text_column: str,
    label_column: str,
    c_value: float | None,
    no_plots: bool,
) -> None:
    """Train a model on labelled files and write it with its card."""
    from reviewserve.model.data import read_files
    from reviewserve.model.evaluate import evaluate as run_evaluation
    from reviewserve.model.train import train as run_training

    configure_logging("INFO")
    columns = {"text_column": text_column, "label_column": label_column}
    try:
        read_files(list(eval_files), **columns)  # a bad --eval file fails now, not after training
        card = run_training(
            list(data),
            out,
            name=name,
            version=model_version,
            params={"C": c_value} if c_value is not None else None,
            **columns,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {out / card.model_file} ({card.model_bytes} bytes, sha256 {card.model_sha256})")
    if eval_files:
        results = run_evaluation(out, list(eval_files), plots=plots_wanted(no_plots), **columns)
        click.echo(json.dumps(results, indent=2))


@main.command()
@model_option
@data_option("Labelled held-out file. Repeatable; each is reported separately.")
@click.option("--min-accuracy", type=float, default=None, help="Exit 1 if any file scores below this.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG report.")
@text_column_option
@label_column_option
def evaluate(
    model_dir: str | None,
    data: tuple[Path, ...],
    min_accuracy: float | None,
    no_plots: bool,
    text_column: str,
    label_column: str,
) -> None:
    """Evaluate a model; write metrics into its card and a report with plots into MODEL/evaluation/.

    A model URL is evaluated in its downloaded copy (MODEL_CACHE_DIR): push a new version to publish results.
    """
    from reviewserve.model import ModelLoadError
    from reviewserve.model.evaluate import evaluate as run_evaluation
    from reviewserve.model.store import fetch

    settings = load_settings()
    try:
        folder = fetch(model_dir or settings.model_source, settings.model_cache_dir, settings.model_fetch_timeout)
        results = run_evaluation(
            folder, list(data), plots=plots_wanted(no_plots), text_column=text_column, label_column=label_column
        )
    except (ValueError, ModelLoadError) as exc:
        raise click.ClickException(str(exc)) from None
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
@click.option("--model", "model_uri", metavar="URI", help="Model folder or URL (s3://, https://) [env MODEL_URI].")
@click.option("--model-sha256", help="Refuse a model file with another sha256 [env MODEL_SHA256].")
@click.option("--model-cache-dir", type=click.Path(path_type=Path), help="Downloads folder [env MODEL_CACHE_DIR].")
@click.option("--track", help="Deployment track label of the metrics [env TRACK, default stable].")
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
@click.option("--health-port", type=int, help="Probe port answered by the master, 0: off [env HEALTH_PORT, 9698].")
@click.option("--max-queue-ms", type=float, help="Shed POSTs past this much waiting work [env MAX_QUEUE_MS, 20].")
@click.option("--retry-after-seconds", type=int, help="Retry-After of a shed 503 [env RETRY_AFTER_SECONDS, 1].")
@click.option("--dev", is_flag=True, help="Local development only: Flask's reloading debug server, 127.0.0.1.")
def serve(dev: bool, **options: object) -> None:
    """Serve the model over HTTP with gunicorn (replaces this process, so signals reach gunicorn)."""
    for option, variable in SERVE_OPTIONS.items():
        if options.get(option) is not None:
            os.environ[variable] = str(options[option])
    settings = load_settings()  # fail fast on bad configuration
    if dev:
        from reviewserve.web.app import create_app

        configure_logging(settings.log_level)
        create_app(settings, retry=True).run(host="127.0.0.1", port=settings.port, debug=True)
        return
    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", *GUNICORN_ARGS])


@main.command()
@click.argument("texts", nargs=-1)
@model_option
def predict(texts: tuple[str, ...], model_dir: str | None) -> None:
    """Score TEXTS (or one text per line of stdin); print one JSON object per text."""
    from reviewserve.model import InvalidText, ModelLoadError
    from reviewserve.model.store import open_predictor

    settings = load_settings()
    try:
        predictor = open_predictor(settings, model_dir)
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


# The batch and stream commands live beside their packages.
from reviewserve.batch.cli import load_reviews_command, score  # noqa: E402
from reviewserve.model.cli import model  # noqa: E402
from reviewserve.stream.cli import stream  # noqa: E402

main.add_command(model)
main.add_command(score)
main.add_command(load_reviews_command)
main.add_command(stream)

if __name__ == "__main__":
    main()

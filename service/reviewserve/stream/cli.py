"""``reviewserve stream produce | consume | groups``: the streaming commands (click group ``stream``).

Every option can also be set by the environment variable shown in ``--help`` (the Helm chart
does that); flags win over variables.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from reviewserve.cliopts import MODEL_HELP, SummaryOnUsageError
from reviewserve.stream import DEFAULT_DEAD_LETTER, DEFAULT_REDIS_URL, DEFAULT_RESULTS, DEFAULT_STREAM

log = logging.getLogger(__name__)


def _common(func: Any) -> Any:
    """--redis-url and --stream, shared by every stream command."""
    func = click.option(
        "--stream",
        default=DEFAULT_STREAM,
        show_default=True,
        envvar="STREAM_NAME",
        show_envvar=True,
        help="Input stream of reviews (field `review`).",
    )(func)
    func = click.option(
        "--redis-url-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        envvar="REDIS_URL_FILE",
        show_envvar=True,
        help="Read the Redis URL from this file instead (a mounted Secret); wins over --redis-url.",
    )(func)
    return click.option(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        show_default=True,
        envvar="REDIS_URL",
        show_envvar=True,
        help="Redis to connect to (redis:// or rediss://, may carry user:password).",
    )(func)


def _url(url: str | None, url_file: Path | None) -> str | None:
    """The URL from ``url_file`` (stripped) when given, else ``url``."""
    if url_file is None:
        return url
    text = url_file.read_text(encoding="utf-8").strip()
    if not text:
        raise click.BadParameter(f"{url_file} is empty", param_hint="URL file")
    return text


def _broker(redis_url: str, block_ms: int = 1000, **retention: int) -> Any:
    from reviewserve.stream.redis_broker import RedisBroker

    return RedisBroker(redis_url, block_ms=block_ms, **retention)


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.ConnectionError, redis.TimeoutError)


def _redis_transient() -> tuple[type[BaseException], ...]:
    """What a consumer waits out: no connection, or Redis out of memory (it retries the batch's write)."""
    import redis

    return (*_redis_errors(), redis.exceptions.OutOfMemoryError)


def _redis_refusals() -> tuple[type[BaseException], ...]:
    """Errors Redis answers with (wrong key type, missing group, auth): reported, not a traceback."""
    import redis

    return (redis.ResponseError, redis.AuthenticationError)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def stream() -> None:
    """Streaming predictions over Redis Streams: produce reviews, consume them in groups."""


@stream.command(
    cls=SummaryOnUsageError,
    usage_summary={"produced": 0, "skipped": 0, "trimmed": 0, "waited_seconds": 0.0},  # nothing ran
)
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@_common
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "jsonl", "text", "labelled"]),
    default="auto",
    show_default=True,
    help="auto: JSON lines with `review` if a file's first line is a JSON object, else plain text lines "
    "(a file whose every line ends in TAB+label is refused: say labelled or text); "
    "labelled: text<TAB>label training files (label dropped).",
)
@click.option(
    "--group",
    "groups",
    multiple=True,
    envvar="STREAM_GROUPS",
    show_envvar=True,
    help="Declare this consumer group before producing (repeatable; the variable takes a space-separated "
    "list): it then sees every entry, since trimming keeps what a group has not read.",
)
@click.option(
    "--max-lag",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    envvar="STREAM_MAX_LAG",
    show_envvar=True,
    help="Back-pressure: wait while a group has more than this many undelivered entries.",
)
@click.option(
    "--max-wait",
    type=click.FloatRange(min=0),
    default=600.0,
    show_default=True,
    envvar="STREAM_MAX_WAIT",
    show_envvar=True,
    help="Longest back-pressure wait for one chunk, in seconds; past it exit 1 naming the group (0: forever).",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Entries per XADD round trip (capped at --max-lag).",
)
@click.option("--no-trim", is_flag=True, help="Do not trim entries every group has acknowledged.")
def produce(
    files: tuple[str, ...],
    redis_url: str,
    redis_url_file: Path | None,
    stream: str,
    fmt: str,
    groups: tuple[str, ...],
    max_lag: int,
    max_wait: float,
    chunk_size: int,
    no_trim: bool,
) -> None:
    """Push reviews from FILES (or stdin) into the stream; print a JSON summary.

    Lines are JSON objects with a `review` field or plain text, one review per line. The last
    stdout line is always the JSON summary, whatever the exit code: 0 all produced, 1 lines skipped
    (each reported on stderr with file and line number) or an error, 130 Ctrl-C, 143 SIGTERM.
    """
    from reviewserve.logs import configure_logging
    from reviewserve.stream.producer import BackPressureTimeout, BadLine, Producer, Skipped, Stopped, read_lines
    from reviewserve.stream.redis_broker import UnsupportedServer

    configure_logging("WARNING")
    redis_url = _url(redis_url, redis_url_file) or redis_url
    broker = _broker(redis_url)
    producer = Producer(
        broker, stream, max_lag=max_lag, chunk_size=chunk_size, trim=not no_trim, max_wait=max_wait, groups=groups
    )
    skipped: list[Skipped] = []

    def reviews() -> Any:
        for name in files or ("-",):
            if name == "-":
                yield from read_lines(sys.stdin, "-", fmt, skipped)  # type: ignore[arg-type]
            else:
                with open(name, encoding="utf-8") as handle:
                    yield from read_lines(handle, name, fmt, skipped)  # type: ignore[arg-type]

    def summary(**extra: object) -> None:
        for item in skipped:
            click.echo(f"skipped {item.where}: {item.reason}", err=True)
        counts = {
            "stream": stream,
            "produced": producer.produced,
            "skipped": len(skipped),
            "trimmed": producer.trimmed,
            "waited_seconds": round(producer.waited_seconds, 3),
        }
        click.echo(json.dumps({**counts, **extra}))

    previous = {signum: signal.signal(signum, producer.on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
    error: str | None = None
    try:
        producer.send(reviews())
    except Stopped as stop:
        summary(stopped=stop.signal_name)
        click.echo(f"Stopped by {stop.signal_name} after {producer.produced} reviews", err=True)
        sys.exit(128 + stop.signum)
    except _redis_errors() as exc:
        error = f"cannot reach Redis at {redis_url}: {exc}"
    except _redis_refusals() as exc:
        error = f"Redis refused: {exc}"
    except (UnsupportedServer, BackPressureTimeout) as exc:
        error = str(exc)
    except (BadLine, UnicodeDecodeError, ValueError) as exc:
        error = f"after {producer.produced} reviews: {exc}"
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        broker.close()
    if error is not None:
        summary(error=error)
        raise click.ClickException(error)
    summary()
    if skipped:
        sys.exit(1)


@stream.command()
@_common
@click.option("--group", required=True, envvar="STREAM_GROUP", show_envvar=True, help="Consumer group.")
@click.option(
    "--consumer",
    required=True,
    envvar="STREAM_CONSUMER",
    show_envvar=True,
    help="This consumer's name in the group (unique and stable per process/pod).",
)
@click.option(
    "--results",
    default=DEFAULT_RESULTS,
    show_default=True,
    envvar="STREAM_RESULTS",
    show_envvar=True,
    help="Results stream (fields source_id, label, probability, positive_probability, model_version).",
)
@click.option(
    "--dead-letter",
    default=DEFAULT_DEAD_LETTER,
    show_default=True,
    envvar="STREAM_DEAD_LETTER",
    show_envvar=True,
    help="Dead-letter stream (fields source_id, reason, group).",
)
@click.option(
    "--sink",
    type=click.Choice(["stream", "sql"]),
    default="stream",
    show_default=True,
    envvar="STREAM_SINK",
    show_envvar=True,
    help="Where results go: the results stream, or a SQL table (--database-url) for an archiver group.",
)
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    show_envvar=True,
    help="SQLAlchemy URL for --sink sql, e.g. sqlite:///archive.db or postgresql://u:p@host/db (psycopg 3).",
)
@click.option(
    "--database-url-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="DATABASE_URL_FILE",
    show_envvar=True,
    help="Read the database URL from this file instead (a mounted Secret).",
)
@click.option(
    "--table",
    default="stream_predictions",
    show_default=True,
    envvar="STREAM_TABLE",
    show_envvar=True,
    help="Table for --sink sql (created if missing; primary key stream, consumer_group, source_id, model_name, "
    "model_version).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=64,
    show_default=True,
    envvar="STREAM_BATCH_SIZE",
    show_envvar=True,
    help="Messages per read (XREADGROUP COUNT), scored in one call.",
)
@click.option(
    "--block-ms",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    envvar="STREAM_BLOCK_MS",
    show_envvar=True,
    help="Longest wait for new messages (XREADGROUP BLOCK); also bounds the SIGTERM reaction time.",
)
@click.option(
    "--claim-idle-ms",
    type=click.IntRange(min=1),
    default=30_000,
    show_default=True,
    envvar="STREAM_CLAIM_IDLE_MS",
    show_envvar=True,
    help="Claim messages pending this long in another consumer (XAUTOCLAIM); keep it above the slowest batch.",
)
@click.option(
    "--max-deliveries",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    envvar="STREAM_MAX_DELIVERIES",
    show_envvar=True,
    help="Dead-letter a message delivered more often than this.",
)
@click.option(
    "--forget-consumers-after-ms",
    type=click.IntRange(min=0),
    default=3_600_000,
    show_default=True,
    envvar="STREAM_FORGET_CONSUMERS_AFTER_MS",
    show_envvar=True,
    help="Remove consumers of the group idle this long with nothing pending (gone pods); 0: never.",
)
@click.option(
    "--results-maxlen",
    type=click.IntRange(min=0),
    default=1_000_000,
    show_default=True,
    envvar="STREAM_RESULTS_MAXLEN",
    show_envvar=True,
    help="Retention of the results stream: XADD MAXLEN ~ this many entries (approximate, at least this "
    "many kept; 0: keep everything).",
)
@click.option(
    "--dead-letter-maxlen",
    type=click.IntRange(min=0),
    default=100_000,
    show_default=True,
    envvar="STREAM_DEAD_LETTER_MAXLEN",
    show_envvar=True,
    help="Retention of the dead-letter stream, as --results-maxlen.",
)
@click.option(
    "--health-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    envvar="STREAM_HEALTH_PORT",
    show_envvar=True,
    help="Port of /healthz, /readyz and /metrics; 0: an ephemeral port, logged at start (the chart sets 9697).",
)
@click.option("--model", "model_dir", default=None, metavar="URI", help=MODEL_HELP)
def consume(
    redis_url: str,
    redis_url_file: Path | None,
    stream: str,
    group: str,
    consumer: str,
    results: str,
    dead_letter: str,
    sink: str,
    database_url: str | None,
    database_url_file: Path | None,
    table: str,
    batch_size: int,
    block_ms: int,
    claim_idle_ms: int,
    max_deliveries: int,
    forget_consumers_after_ms: int,
    results_maxlen: int,
    dead_letter_maxlen: int,
    health_port: int,
    model_dir: str | None,
) -> None:
    """Score the stream in consumer group GROUP as consumer NAME until SIGTERM (then exit 0).

    Reads batches, scores each with one Predictor call, writes each result (or dead letter) and
    acknowledges it atomically. Serves /healthz, /readyz and /metrics on --health-port.
    """
    # One process, one registry: the image's multiprocess setting is for gunicorn's workers only
    # (prometheus_client reads it when first imported).
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from prometheus_client import CollectorRegistry

    from reviewserve.cliopts import load_settings as _settings
    from reviewserve.logs import configure_logging
    from reviewserve.model import ModelLoadError
    from reviewserve.model.store import open_predictor
    from reviewserve.stream.consumer import Consumer, ConsumerConfig
    from reviewserve.stream.health import HealthServer
    from reviewserve.stream.metrics import GroupCollector, LengthCollector, StreamMetrics
    from reviewserve.stream.redis_broker import UnsupportedServer
    from reviewserve.stream.sinks import Route, Sink, SqlSink, StreamSink

    settings = _settings()
    configure_logging(settings.log_level)
    redis_url = _url(redis_url, redis_url_file) or redis_url
    database_url = _url(database_url, database_url_file)
    if sink == "sql" and not database_url:
        raise click.UsageError("--sink sql needs --database-url (or DATABASE_URL)")
    try:
        predictor = open_predictor(settings, model_dir)
    except ModelLoadError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        chosen: Sink = (
            SqlSink(database_url, table, model_name=predictor.name) if sink == "sql" and database_url else StreamSink()
        )
    except Exception as exc:  # bad URL, missing driver, unreachable database: say which
        raise click.ClickException(f"--sink sql: {type(exc).__name__}: {exc}") from None

    broker = _broker(redis_url, block_ms, results_maxlen=results_maxlen, dead_letter_maxlen=dead_letter_maxlen)
    route = Route(stream=stream, group=group, results=results, dead_letter=dead_letter)
    config = ConsumerConfig(
        route=route,
        consumer=consumer,
        batch_size=batch_size,
        block_ms=block_ms,
        claim_idle_ms=claim_idle_ms,
        max_deliveries=max_deliveries,
        forget_consumers_after_ms=forget_consumers_after_ms,
        transient_errors=(*_redis_transient(), *_sql_errors(sink)),
    )
    registry = CollectorRegistry(auto_describe=True)
    metrics = StreamMetrics(registry)
    metrics.model_info.labels(name=predictor.name, version=predictor.version).set(1)
    metrics.consumer_info.labels(stream=stream, group=group, consumer=consumer, sink=chosen.name).set(1)
    registry.register(GroupCollector(stream, lambda: broker.groups(stream)))
    outputs = [stream, dead_letter] if sink == "sql" else [stream, results, dead_letter]
    registry.register(LengthCollector(lambda: broker.lengths(outputs)))
    worker = Consumer(broker, predictor, chosen, config, metrics)

    def ready() -> str | None:
        if worker.stopping.is_set():
            return "shutting down"
        if not broker.ping():
            return f"broker unreachable ({worker.broker_error or 'no answer to PING'})"
        if worker.broker_error:
            return f"retrying after: {worker.broker_error}"
        if not broker.group_exists(stream, group):
            return f"group {group!r} does not exist on stream {stream!r} yet"
        return chosen.ready()

    try:
        health = HealthServer(health_port, registry, alive=worker.alive, ready=ready)
    except OSError as exc:
        raise click.ClickException(f"--health-port {health_port}: {exc}") from None
    health.start()
    log.info("health port %d: /healthz /readyz /metrics", health.port, extra={"health_port": health.port})
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.request_stop())
    try:
        worker.run()
    except _redis_refusals() as exc:  # e.g. the key is not a stream, the group was destroyed
        raise click.ClickException(f"Redis refused: {exc}") from None
    except (UnsupportedServer, ValueError) as exc:  # ValueError: an archive table with another key
        raise click.ClickException(str(exc)) from None
    finally:
        health.stop()
        chosen.close()
        broker.close()


def _sql_errors(sink: str) -> tuple[type[BaseException], ...]:
    if sink != "sql":
        return ()
    from reviewserve.stream.sinks import sql_transient_errors

    return sql_transient_errors()


@stream.command()
@_common
def groups(redis_url: str, redis_url_file: Path | None, stream: str) -> None:
    """Print the stream's consumer groups (consumers, pending, lag) as JSON lines."""
    from reviewserve.stream.redis_broker import UnsupportedServer

    redis_url = _url(redis_url, redis_url_file) or redis_url
    broker = _broker(redis_url)
    try:
        broker.check_server()
        for info in broker.groups(stream):
            click.echo(json.dumps(asdict(info)))
    except _redis_errors() as exc:
        raise click.ClickException(f"cannot reach Redis at {redis_url}: {exc}") from None
    except _redis_refusals() as exc:
        raise click.ClickException(f"Redis refused: {exc}") from None
    except UnsupportedServer as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        broker.close()

"""Every ``reviewserve serve`` flag reaches the settings gunicorn and its workers read.

``serve`` hands over to gunicorn with ``os.execv``; the environment at that moment is what the master,
its config module and every worker read their Settings from. The test stops at the exec and reads it
(tests/integration/test_gunicorn.py starts the real server with flags).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from reviewserve import cli
from reviewserve.settings import Settings

# flag -> (value given, the Settings field and the value it must hold in the workers)
FLAGS: dict[str, tuple[str, str, object]] = {
    "--port": ("8123", "port", 8123),
    "--workers": ("3", "workers", 3),
    "--worker-class": ("gthread", "worker_class", "gthread"),
    "--worker-connections": ("77", "worker_connections", 77),
    "--threads": ("5", "threads", 5),
    "--model-path": ("/srv/models/m/2", "model_path", Path("/srv/models/m/2")),
    "--model": ("s3://models/review-sentiment/2", "model_uri", "s3://models/review-sentiment/2"),
    "--model-sha256": ("ab" * 32, "model_sha256", "ab" * 32),
    "--model-cache-dir": ("/srv/cache", "model_cache_dir", Path("/srv/cache")),
    "--track": ("canary", "track", "canary"),
    "--max-body-bytes": ("4096", "max_body_bytes", 4096),
    "--max-reviews": ("7", "max_reviews", 7),
    "--max-review-chars": ("99", "max_review_chars", 99),
    "--log-level": ("warning", "log_level", "WARNING"),
    "--timeout": ("41", "timeout", 41),
    "--graceful-timeout": ("13", "graceful_timeout", 13),
    "--shutdown-delay": ("2.5", "shutdown_delay", 2.5),
    "--keepalive": ("9", "keepalive", 9),
    "--keepalive-requests": ("33", "keepalive_requests", 33),
    "--max-requests": ("123", "max_requests", 123),
    "--max-requests-jitter": ("12", "max_requests_jitter", 12),
    "--metrics-dir": ("/tmp/rs-metrics-flag-test", "prometheus_multiproc_dir", Path("/tmp/rs-metrics-flag-test")),
    "--health-port": ("9712", "health_port", 9712),
    "--max-queue-ms": ("35.5", "max_queue_ms", 35.5),
    "--retry-after-seconds": ("4", "retry_after_seconds", 4),
}


class Exec(Exception):
    """Raised instead of replacing the test process with gunicorn."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        super().__init__(argv)
        self.argv = argv
        self.env = env


@pytest.fixture
def exec_capture(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    saved = dict(os.environ)  # serve writes os.environ; later tests must not see its variables
    for variable in cli.SERVE_OPTIONS.values():
        os.environ.pop(variable, None)

    def fake_execv(path: str, argv: list[str]) -> None:
        raise Exec(argv, dict(os.environ))

    monkeypatch.setattr(cli.os, "execv", fake_execv)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _serve(*args: str) -> Exec:
    result = CliRunner().invoke(cli.main, ["serve", *args])
    assert isinstance(result.exception, Exec), result.output
    return result.exception


def test_every_serve_option_is_in_this_test() -> None:
    serve: click.Command = cli.main.commands["serve"]
    options = {opt for p in serve.params for opt in p.opts if opt.startswith("--")} - {"--dev", "--help"}
    assert options == set(FLAGS)


def test_all_flags_together_reach_the_settings(exec_capture: None) -> None:
    exec_call = _serve(*[part for flag, (value, _, _) in FLAGS.items() for part in (flag, value)])
    assert exec_call.argv[1:] == ["-m", "gunicorn", *cli.GUNICORN_ARGS]
    settings = Settings()  # reads the environment serve left for gunicorn
    for flag, (_, field, expected) in FLAGS.items():
        assert getattr(settings, field) == expected, flag


@pytest.mark.parametrize("flag", list(FLAGS))
def test_each_flag_alone_sets_only_its_variable(exec_capture: None, flag: str) -> None:
    value, field, expected = FLAGS[flag]
    variable = cli.SERVE_OPTIONS[field if field != "prometheus_multiproc_dir" else "metrics_dir"]
    exec_call = _serve(flag, value)
    assert exec_call.env[variable] == value
    others = {v for v in cli.SERVE_OPTIONS.values() if v != variable}
    assert not others & set(exec_call.env), "a flag that was not given must leave its variable alone"
    assert getattr(Settings(), field) == expected


def test_no_flag_leaves_the_environment_to_the_defaults(exec_capture: None) -> None:
    exec_call = _serve()
    assert not set(cli.SERVE_OPTIONS.values()) & set(exec_call.env)
    assert Settings().max_body_bytes == 1_048_576


def test_serve_leaves_no_variable_behind() -> None:
    # Runs after the tests above: a leaked PROMETHEUS_MULTIPROC_DIR would switch every later app to
    # gunicorn's multiprocess metrics.
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") != FLAGS["--metrics-dir"][0]
    assert os.environ.get("MAX_BODY_BYTES") != FLAGS["--max-body-bytes"][0]


def test_invalid_flag_value_fails_before_gunicorn(exec_capture: None) -> None:
    result = CliRunner().invoke(cli.main, ["serve", "--port", "70000"])
    assert result.exit_code == 1 and "invalid configuration" in result.output and "port" in result.output

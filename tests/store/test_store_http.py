"""A model folder served over plain HTTP (a real http.server): fetched, verified and scored; secrets never shown."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from reviewserve.cli import main
from tests.modelversions import make_version

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


class QuietHandler(SimpleHTTPRequestHandler):
    """A static file handler that does not write its access log into the command's captured output."""

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_store(tmp_path: Path) -> Iterator[str]:
    """An HTTP server over a folder holding review-sentiment/5; yields its base URL."""
    make_version(tmp_path / "site" / "review-sentiment" / "5", "5")
    handler = functools.partial(QuietHandler, directory=str(tmp_path / "site"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_predict_with_a_model_fetched_over_http(http_store: str, tmp_path: Path) -> None:
    result = CliRunner(env={"MODEL_CACHE_DIR": str(tmp_path / "cache")}).invoke(
        main, ["predict", "--model", f"{http_store}/review-sentiment/5?token=folder-wide", "a lovely phone"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[-1])["prediction"] == "positive"


def test_a_missing_folder_is_named_without_its_secrets(http_store: str, tmp_path: Path) -> None:
    secret_url = http_store.replace("http://", "http://reader:hunter2@") + "/review-sentiment/9?token=t0ps3cret"
    result = CliRunner(env={"MODEL_CACHE_DIR": str(tmp_path / "cache")}).invoke(
        main, ["predict", "--model", secret_url, "a lovely phone"]
    )
    assert result.exit_code == 1
    assert "no card.json there" in result.output and "/review-sentiment/9" in result.output
    assert "hunter2" not in result.output and "t0ps3cret" not in result.output


def test_a_store_that_never_answers_times_out_with_the_reason(tmp_path: Path) -> None:
    """MODEL_FETCH_TIMEOUT bounds a download: a server that accepts and never answers is an error, not a hang."""
    import socket
    import time

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/review-sentiment/1"
        started = time.monotonic()
        result = CliRunner(env={"MODEL_CACHE_DIR": str(tmp_path / "cache"), "MODEL_FETCH_TIMEOUT": "1"}).invoke(
            main, ["predict", "--model", url, "a lovely phone"]
        )
        elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.output
    assert f"cannot download card.json of {url}" in result.output and "Timeout" in result.output, result.output
    assert elapsed < 15, f"MODEL_FETCH_TIMEOUT=1 but the download took {elapsed:.1f} s"


def test_evaluate_a_model_fetched_over_http_writes_to_the_cached_copy_only(http_store: str, tmp_path: Path) -> None:
    """`evaluate --model URL` scores the downloaded copy; the store's card is never changed."""
    held = tmp_path / "held.csv"
    held.write_text("text,label\nI love this phone,1\nwhat a great movie,1\nterrible service,0\nawful food,0\n")
    stored_card = tmp_path / "site" / "review-sentiment" / "5" / "card.json"
    before = stored_card.read_bytes()
    cache = tmp_path / "cache"
    result = CliRunner(env={"MODEL_CACHE_DIR": str(cache)}).invoke(
        main, ["evaluate", "--model", f"{http_store}/review-sentiment/5", "--data", str(held), "--no-plots"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["held"]["rows"] == 4
    assert stored_card.read_bytes() == before
    [copy] = [p for p in cache.iterdir() if not p.name.startswith(".")]
    card = json.loads((copy / "card.json").read_text())
    assert card["version"] == "5" and "accuracy" in card["metrics"]["held"]

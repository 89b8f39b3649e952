"""Issue 17 item 11: `make dev` (`reviewserve serve --dev`) writes plain JSON log lines, no terminal colour codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port

pytestmark = pytest.mark.slow


def test_dev_server_logs_are_json_without_ansi_codes(tmp_path: Path) -> None:
    """werkzeug colours its request lines (404 yellow, 200 plain...): the JSON lines must carry plain text."""
    port = free_port()
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    env = {**{k: v for k, v in os.environ.items() if k != "MODEL_PATH"}, "PYTHONUNBUFFERED": "1"}
    with out.open("wb") as stdout, err.open("wb") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "reviewserve.cli", "serve", "--dev", "--port", str(port)],
            stdout=stdout, stderr=stderr, env=env, cwd=tmp_path, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:  # the reloader binds before the app has loaded the model
                pass
            assert time.monotonic() < deadline and server.poll() is None, err.read_text()
            time.sleep(0.3)
        assert requests.get(f"http://127.0.0.1:{port}/no-such-page", timeout=5).status_code == 404
        requests.post(f"http://127.0.0.1:{port}/predict", json={"review": "great"}, timeout=5).raise_for_status()
        time.sleep(0.5)
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the dev server's reloader runs the app in a child
        server.wait(timeout=20)
    logged = out.read_text()
    # json.dumps writes ESC as \u001b inside a JSON string: look for both spellings.
    assert "\x1b" not in logged and "\\u001b" not in logged and "\x1b" not in err.read_text()
    # Flask prints its " * Serving Flask app" banner itself; every log record is one JSON line.
    records = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    assert not [r["message"] for r in records if "\x1b" in r["message"]]
    requests_logged = [r["message"] for r in records if r.get("logger") == "werkzeug" and "HTTP/1.1" in r["message"]]
    assert any('"GET /no-such-page HTTP/1.1" 404' in m for m in requests_logged), requests_logged

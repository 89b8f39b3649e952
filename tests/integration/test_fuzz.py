"""schemathesis fuzzes the live gunicorn server against its own /openapi.json: no 5xx, no off-schema answer."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import Server

pytestmark = pytest.mark.slow
CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_schemathesis_finds_nothing(live_server: Server, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("st")
    result = subprocess.run(
        [
            str(st),
            "--no-color",
            "--config-file",
            str(CONFIG),
            "run",
            f"{live_server.url}/openapi.json",
            "--max-examples",
            "60",
            "--seed",
            "20261130",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "generated" in result.stdout
    statuses = Counter(entry["status"] for entry in _request_log(live_server))
    assert sum(statuses.values()) > 500, statuses  # the fuzzer really reached the server
    assert not [status for status in statuses if status >= 500], statuses
    assert {400, 413, 415, 422} <= set(statuses), statuses  # and sent it bad input of every kind


def _request_log(server: Server) -> list[dict]:
    """The server's per-request JSON log entries."""
    entries = []
    for line in server.log().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "request":
            entries.append(entry)
    return entries

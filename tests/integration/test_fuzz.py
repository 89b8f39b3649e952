"""schemathesis fuzzes the live gunicorn server against its own /openapi.json: no 5xx, no off-schema answer."""

from __future__ import annotations

import subprocess
import sys
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
    assert "500" not in [
        line.split()[0] for line in live_server.log().splitlines() if line.startswith('{"') and '"status": 5' in line
    ]

"""`make bench` in seconds (--smoke): the benchmark runs end to end and reports; it need not meet targets."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.systools import missing_tool

pytestmark = pytest.mark.slow


def test_bench_smoke_runs_and_reports(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        missing_tool("wrk", "wrk")
    results, doc = tmp_path / "peers.json", tmp_path / "benchmarks.md"
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--results", str(results), "--doc", str(doc),
         "--work", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads(results.read_text())
    assert set(data["servers"]) == {"reviewserve", "seed", "plain"}
    cells = {(c["server"], c["kind"], c["c"]): c for c in data["cells"]}
    expected = {(s, "single", c) for s in data["servers"] for c in (1, 8)}
    expected |= {(s, "list", c) for s in ("reviewserve", "plain") for c in (1, 8)}
    expected |= {(s, "fixed", 8) for s in data["servers"]}
    assert set(cells) == expected
    for key, cell in cells.items():
        assert cell["requests"] > 0, key
        assert cell["p50_ms"] <= cell["p99_ms"], key
    # a correct server under plain load answers every request 2xx
    assert all(c["errors_status"] + c["errors_socket"] == 0 for k, c in cells.items() if k[0] == "reviewserve")
    # single cells cycle through the corpus (issue 15), not the one fixed sentence
    assert "single_texts" in data["settings"]
    assert data["in_process"]["predictor_single"]["p50_ms"] > 0
    assert all(m["pss_mib"] > 0 for m in data["memory"])
    text = doc.read_text()
    headings = ("### Targets (issue 6)", "### The model in process", "### The fixed sentence", "reviewserve / peer")
    for heading in (*headings, "PSS"):
        assert heading in text
    for png in ("throughput.png", "latency.png"):
        assert (tmp_path / "benchmarks" / png).read_bytes().startswith(b"\x89PNG")

"""`make bench-overload` in seconds (--smoke): the open-loop run goes end to end and reports; targets not judged."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.openloop import STALL_S
from tests.conftest import ROOT
from tests.systools import missing_tool

pytestmark = pytest.mark.slow


def test_bench_overload_smoke_runs_and_reports(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        missing_tool("wrk", "wrk")
    results, doc = tmp_path / "overload.json", tmp_path / "benchmarks.md"
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.overload", "--smoke", "--results", str(results), "--doc", str(doc),
         "--work", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads(results.read_text())
    assert set(data["summary"]) == {"reviewserve", "plain"}
    for server, rows in data["summary"].items():
        labels = [r["label"] for r in rows]
        assert labels == ["1x", "1.5x", "after 1.5x", "2x", "after 2x", "4x", "after 4x"], server
        capacity = rows[0]["capacity_rps"]
        assert capacity > 0
        for row in rows:
            # open loop: what was offered is what the schedule says, whatever the server answered
            factor = 1.0 if row["label"].startswith("after ") else float(row["label"][:-1])
            assert row["offered_rps"] == pytest.approx(capacity * factor, rel=0.01)
            assert row["requests"] == pytest.approx(row["offered_rps"] * row["seconds"], abs=2), (server, row)
            counted = row["ok"] + row["shed"] + row["socket_errors"] + row["unsent"] + row["other_5xx"]
            assert counted + row["other_status"] == row["requests"], (server, row)  # every request accounted for
            if server == "reviewserve":  # its probes answer in milliseconds whatever the load: one per second
                assert row["ready_polls"] >= 1, (server, row)
        # A probe of the overloaded plain stack can take its whole timeout (2 s, a connect and a read), so one
        # of its 2 s smoke phases may see no probe start at all; the run as a whole is probed.
        assert sum(row["ready_polls"] for row in rows) >= len(rows) // 2, (server, rows)
        assert rows[0]["ok"] > 0 and rows[0]["p99_ms"] > 0
        after = [r for r in rows if r["label"].startswith("after ")]
        assert after and all("recovery_s" in r and "recovery_every_window_s" in r for r in after)
        assert all(r["recovery_unjudged_windows"] <= round(r["seconds"] / 0.5) for r in after)
        for r in rows:  # the generator's own stalls, counted per load, with the longest (beyond STALL_S) if any
            assert (r["generator_stall_max_ms"] is None) == (r["generator_stalls"] == 0), r
            assert r["generator_stall_max_ms"] is None or r["generator_stall_max_ms"] > STALL_S * 1000, r
    # the raw per-request records stay in --work; the committed JSON has per-second timelines
    assert all("records" not in r["openloop"] and r["timeline"] for r in data["runs"])
    assert all("generator_stall_ms" in second for r in data["runs"] for second in r["timeline"])
    text = doc.read_text()
    for heading in ("## Overload", "### Targets (issue 15, reviewserve)", "### reviewserve", "### plain"):
        assert heading in text
    assert (tmp_path / "benchmarks" / "overload.png").read_bytes().startswith(b"\x89PNG")

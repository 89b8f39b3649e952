"""``reviewserve stream produce``: input formats, back-pressure and trimming that never drop a message."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from tests.conftest import ROOT
from tests.stream.conftest import Keys, Procs, RedisServer, reviews, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_formats_files_and_stdin(procs: Procs, r: redis.Redis, keys: Keys, tmp_path: Path) -> None:
    """JSON lines with `review`, plain lines, the labelled training format; bad JSON lines are named."""
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"review": "great phone"}\n{"text": "no review"}\nnot json\n\n{"review": "awful"}\n')
    text = tmp_path / "in.txt"
    text.write_text("plain line one\n{braces} are fine in text\n")
    labelled = tmp_path / "labelled.tsv"
    labelled.write_text("sentence\tlabel\nloved it\t1\nhated it\t0\n")
    first = procs._spawn("p1", ["produce", "--stream", keys.stream, str(jsonl), str(text)])
    assert first.process.wait(timeout=60) == 1, first.log()
    log = first.log()
    assert f"skipped {jsonl}:2: no string 'review' field" in log
    assert f"skipped {jsonl}:3: not JSON" in log
    assert json.loads(log.splitlines()[-1])["produced"] == 4
    second = procs._spawn("p2", ["produce", "--stream", keys.stream, "--format", "labelled", str(labelled)])
    assert second.process.wait(timeout=60) == 0, second.log()
    third = procs.producer("p3", ["from stdin"])
    assert third.process.wait(timeout=60) == 0, third.log()
    expected = ["great phone", "awful", "plain line one", "{braces} are fine in text", "loved it", "hated it"]
    assert [f for _, f in r.xrange(keys.stream)] == [{"review": t} for t in [*expected, "from stdin"]]


def test_back_pressure_and_trimming_never_drop_unread(procs: Procs, r: redis.Redis, keys: Keys) -> None:
    """The producer waits while a group lags; trimming removes only acknowledged entries: all get results."""
    r.xgroup_create(keys.stream, "scorers", id="0", mkstream=True)
    r.xgroup_create(keys.stream, "archiver", id="0")  # a second group that reads later, slower
    total, max_lag, chunk = 3000, 300, 100
    producer = procs.producer("p", reviews(total), "--max-lag", str(max_lag), "--chunk-size", str(chunk))
    time.sleep(3)
    assert producer.process.poll() is None, "the producer must wait: nobody reads"
    assert r.xlen(keys.stream) <= max_lag + chunk, "back-pressure bounds the stream"
    assert all(g["lag"] <= max_lag + chunk for g in r.xinfo_groups(keys.stream))

    scorer = procs.consumer("s1", "scorers", "--batch-size", "64")
    time.sleep(2)
    assert producer.process.poll() is None, "the archiver group still lags: keep waiting"
    archiver = procs.consumer("a1", "archiver", "--batch-size", "64", "--results", keys.results + ":archive")
    assert producer.process.wait(timeout=180) == 0, producer.log()
    summary = json.loads(producer.log().splitlines()[-1])
    assert summary["produced"] == total and summary["trimmed"] > 0 and summary["waited_seconds"] > 3

    def drained() -> bool:
        return all(g["pending"] == 0 and g["lag"] == 0 for g in r.xinfo_groups(keys.stream))

    wait_until(drained, 120, "both groups to drain")
    for results in (keys.results, keys.results + ":archive"):
        counts = Counter(f["source_id"] for _, f in r.xrange(results))
        assert len(counts) == total and max(counts.values()) == 1, "every produced message was scored once"
    assert r.xlen(keys.stream) <= max_lag + chunk, "trimmed while producing"
    for proc in (scorer, archiver):
        assert proc.terminate() == 0


def _produce(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reviewserve.cli", "stream", "produce", *args],
        input=stdin, capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, **env}, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stopped_producer_prints_its_summary_last(
    redis_server: RedisServer, r: redis.Redis, keys: Keys, signum: int
) -> None:
    """Issue 17 item 7: SIGTERM / Ctrl-C: the last stdout line is the JSON summary with what was produced."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "reviewserve.cli", "stream", "produce", "--stream", keys.stream, "--chunk-size", "1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "REDIS_URL": redis_server.url},
    )  # fmt: skip
    assert proc.stdin is not None
    for line in reviews(5):
        proc.stdin.write(line + "\n")
    proc.stdin.flush()  # stdin stays open: the producer waits for more input, as `tail -f | produce` does
    wait_until(lambda: r.xlen(keys.stream) == 5, 30, "5 entries")
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, (out, err)
    summary = json.loads(out.splitlines()[-1])
    assert summary["produced"] == 5 and summary["stopped"] == signal.Signals(signum).name
    assert "Traceback" not in err and f"Stopped by {signal.Signals(signum).name} after 5 reviews" in err


def test_failed_producer_prints_its_summary_last(keys: Keys) -> None:
    """Issue 17 item 7: Redis unreachable: exit 1, the error on stderr, the summary still last on stdout."""
    with socket.socket() as sock:  # bound, never listening: connection refused
        sock.bind(("127.0.0.1", 0))
        proc = _produce(
            "--stream", keys.stream, stdin="one\n", REDIS_URL=f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
        )
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["produced"] == 0 and summary["error"].startswith("cannot reach Redis")
    assert "Error: cannot reach Redis" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("args", [("--chunk-size", "0"), ("--no-such-flag",)])
def test_a_usage_error_still_ends_with_the_summary(args: tuple[str, ...]) -> None:
    """Issue 17 item 7, every exit code: click's usage error (2) stops before any line is read; summary of zeros."""
    proc = _produce(*args, stdin="one\n", REDIS_URL="redis://127.0.0.1:1/0")
    assert proc.returncode == 2 and args[0] in proc.stderr and "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["produced"] == 0 and args[0] in summary["error"]


def test_labelled_file_without_format_labelled(
    redis_server: RedisServer, r: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    """Issue 17 item 8: every line ending in TAB+label: a file is refused, stdin warned about; text keeps them."""
    labelled = tmp_path / "amazon.txt"
    labelled.write_text(
        "So there is no way for me to plug it in.\t0\nGood case, Excellent value.\t1\nworked once!\t0\n"
    )
    env = {"REDIS_URL": redis_server.url}
    refused = _produce("--stream", keys.stream, str(labelled), **env)
    assert refused.returncode == 1 and r.xlen(keys.stream) == 0
    assert "all 3 lines end in a TAB and a label" in refused.stderr and "--format labelled" in refused.stderr
    assert json.loads(refused.stdout.splitlines()[-1])["produced"] == 0
    kept = _produce("--stream", keys.stream, "--format", "text", str(labelled), **env)
    assert kept.returncode == 0 and r.xlen(keys.stream) == 3 and "TAB and a label" not in kept.stderr
    piped = _produce("--stream", keys.stream, stdin=labelled.read_text(), **env)
    assert piped.returncode == 0 and "-: all 3 lines end in a TAB and a label" in piped.stderr
    mixed = _produce("--stream", keys.stream, stdin="fine\t1\nno label here\n", **env)
    assert mixed.returncode == 0 and "TAB and a label" not in mixed.stderr
    labelled_ok = _produce("--stream", keys.stream, "--format", "labelled", str(labelled), **env)
    assert labelled_ok.returncode == 0
    assert [f["review"] for _, f in r.xrange(keys.stream)][-3:] == [
        "So there is no way for me to plug it in.", "Good case, Excellent value.", "worked once!",
    ]  # fmt: skip

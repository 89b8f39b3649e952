"""``reviewserve stream produce``: input formats, back-pressure and trimming that never drop a message."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from tests.stream.conftest import Keys, Procs, reviews, wait_until

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

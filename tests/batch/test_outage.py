"""``--retry-for``: the job rides out a PostgreSQL restart and SQLite's ``database is locked``; an outage
longer than the window ends it with exit 1, a one-line message, and a rerun that is exact."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.batch import servers
from tests.batch.conftest import Run, make_reviews, prediction_counts, review_texts, run_score, score_command, score_env
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture
def own_pg() -> Iterator[servers.Postgres]:
    """A PostgreSQL cluster of this test alone (it is restarted and stopped)."""
    with servers.postgres() as pg:
        yield pg


def run_and_act(args: tuple[str, ...], after_chunks: int, action: object) -> Run:
    """Run ``reviewserve score``; call ``action()`` once ``after_chunks`` chunks are committed; wait for the end."""
    process = subprocess.Popen(
        score_command(*args), cwd=ROOT, env=score_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    lines: list[str] = []
    committed = 0
    acted: threading.Thread | None = None
    for line in process.stdout:
        lines.append(line)
        if acted is None and '"chunk committed"' in line:
            committed += 1
            if committed >= after_chunks:
                acted = threading.Thread(target=action)  # type: ignore[arg-type]
                acted.start()
    process.wait(timeout=300)
    if acted is not None:
        acted.join(timeout=120)
    assert process.stderr is not None
    err = process.stderr.read()
    process.stdout.close()
    process.stderr.close()
    assert acted is not None, f"the job ended before {after_chunks} chunks: {err}"
    return Run(process.returncode, "".join(lines), err)


def retry_lines(run: Run) -> list[dict[str, object]]:
    return [json.loads(line) for line in run.stdout.splitlines()
            if line.startswith("{") and "unavailable, retrying" in line]  # fmt: skip


def test_a_postgresql_restart_mid_job_is_ridden_out_with_one_prediction_per_row(own_pg: servers.Postgres) -> None:
    url = own_pg.create_database(f"t_{uuid.uuid4().hex[:12]}")
    rows = 20_000
    make_reviews(url, list(enumerate(review_texts(rows), start=1)))
    run = run_and_act(("--source", url, "--chunk-size", "200"), 3, lambda: own_pg.pg_ctl("restart", "-m", "fast", "-w"))
    assert run.returncode == 0, run.stderr
    retries = retry_lines(run)
    assert retries, "the restart was not seen by the job"
    assert all(isinstance(r["error"], str) and "\n" not in r["error"] for r in retries)
    assert [r["attempt"] for r in retries] == list(range(1, len(retries) + 1))  # one line per attempt
    assert run.summary["exit_code"] == 0 and run.summary["retries"] == len(retries)
    assert prediction_counts(url) == {"rows": rows, "ids": rows, "duplicates": 0}
    print(f"restart mid-job: exit 0 after {len(retries)} retry attempt(s); {prediction_counts(url)}")


def test_a_postgresql_outage_longer_than_the_window_exits_1_then_a_rerun_is_exact(own_pg: servers.Postgres) -> None:
    url = own_pg.create_database(f"t_{uuid.uuid4().hex[:12]}")
    rows = 20_000
    make_reviews(url, list(enumerate(review_texts(rows), start=1)))
    args = ("--source", url, "--chunk-size", "200", "--retry-for", "3")
    started = time.monotonic()
    run = run_and_act(args, 3, lambda: own_pg.pg_ctl("stop", "-m", "fast", "-w"))
    assert run.returncode == 1, run.stderr
    assert time.monotonic() - started < 60
    error_lines = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "database unavailable" in error_lines[0] and "--retry-for 3" in error_lines[0]
    assert "Traceback" not in run.stderr and "sqlalche.me" not in run.stderr
    summary = run.summary
    assert summary["exit_code"] == 1 and summary["error"] == error_lines[0].removeprefix("Error: ")
    assert retry_lines(run)

    own_pg.pg_ctl("start", "-w")
    partial = prediction_counts(url)
    assert partial["duplicates"] == 0 and partial["rows"] % 200 == 0 and partial["rows"] >= 600
    rerun = run_score("--source", url, "--chunk-size", "1000")
    assert rerun.returncode == 0, rerun.stderr
    assert (rerun.summary["read"], rerun.summary["skipped"]) == (rows - partial["rows"], partial["rows"])
    assert prediction_counts(url) == {"rows": rows, "ids": rows, "duplicates": 0}
    print(
        f"outage past --retry-for 3: exit 1 ({error_lines[0]!r}) with {partial['rows']} rows committed; "
        f"rerun read {rerun.summary['read']}, skipped {rerun.summary['skipped']}: {prediction_counts(url)}"
    )


def _hold_write_lock(path: Path, seconds: float) -> None:
    with sqlite3.connect(path, timeout=60, isolation_level=None) as conn:
        conn.execute("BEGIN IMMEDIATE")  # the write lock: every writer gets `database is locked`
        time.sleep(seconds)
        conn.execute("ROLLBACK")


def test_sqlite_database_is_locked_under_concurrent_shards_is_retried(tmp_path: Path) -> None:
    db = tmp_path / "reviews.db"
    url = f"sqlite:///{db}"
    rows = 6000
    make_reviews(url, list(enumerate(review_texts(rows), start=1)))
    locker = threading.Thread(target=_hold_write_lock, args=(db, 8.0))
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    commands = [score_command("--source", url, "--shard", f"{k}/2", "--chunk-size", "100") for k in range(2)]
    shards = [subprocess.Popen(command, cwd=ROOT, env=score_env(), **pipes) for command in commands]
    assert shards[0].stdout is not None
    head = []
    for line in shards[0].stdout:  # both shards are writing: lock the database for longer than a busy wait
        head.append(line)
        if '"chunk committed"' in line:
            locker.start()
            break
    outputs = [p.communicate(timeout=300) for p in shards]
    locker.join()
    outputs[0] = ("".join(head) + outputs[0][0], outputs[0][1])
    runs = [Run(p.returncode, out, err) for p, (out, err) in zip(shards, outputs, strict=True)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    locked = [r for run in runs for r in retry_lines(run)]
    assert locked and all("database is locked" in str(r["error"]) for r in locked)
    assert sum(run.summary["read"] for run in runs) == rows
    assert prediction_counts(url) == {"rows": rows, "ids": rows, "duplicates": 0}

    # Locked for longer than the window: exit 1, one line, and a rerun scores what is missing.
    args = ("--source", url, "--table", "more", "--predictions-table", "more_predictions", "--chunk-size", "100",
            "--retry-for", "2")  # fmt: skip
    make_reviews(url, [(i, t) for i, t in enumerate(review_texts(100), start=1)], table="more")
    assert run_score(*args).returncode == 0  # the predictions table exists: the job gets to its chunks
    with sqlite3.connect(db, isolation_level=None) as conn:
        conn.executemany("INSERT INTO more VALUES (?, ?)", [(101 + i, t) for i, t in enumerate(review_texts(400))])
        conn.execute("BEGIN IMMEDIATE")
        failed = run_score(*args)
        conn.execute("ROLLBACK")
    assert failed.returncode == 1, failed.stderr
    assert "database unavailable" in failed.stderr and "database is locked" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    assert failed.summary["exit_code"] == 1
    rerun = run_score(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert prediction_counts(url, "more_predictions") == {"rows": 500, "ids": 500, "duplicates": 0}

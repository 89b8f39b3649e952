"""Data integrity of ``reviewserve score`` on SQL (issue 18 items 1, 4, 5; issue 17 items 6, 7, 11): no row
gets another row's result, the same behaviour on SQLite and PostgreSQL, and a summary for every exit."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.batch.conftest import (
    Run,
    engine_for,
    execute_sql,
    make_reviews,
    prediction_counts,
    query,
    review_texts,
    score_command,
    score_env,
    score_in_process,
)
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_a_predictions_table_holds_one_source_table(db_url: str) -> None:
    make_reviews(db_url, [(1, "I love it, wonderful")])
    make_reviews(db_url, [(1, "crashes constantly, awful")], table="app_reviews")
    assert score_in_process("--source", db_url, "--table", "reviews").returncode == 0

    other = score_in_process("--source", db_url, "--table", "app_reviews")
    assert other.returncode == 1, other.stderr
    assert "holds the results of table 'reviews'" in other.stderr and "--predictions-table" in other.stderr
    assert other.summary["exit_code"] == 1 and other.summary["read"] == 0
    dry = score_in_process("--source", db_url, "--table", "app_reviews", "--dry-run")
    assert dry.returncode == 1 and "holds the results of table 'reviews'" in dry.stderr

    own = score_in_process("--source", db_url, "--table", "app_reviews", "--predictions-table", "app_predictions")
    assert own.returncode == 0, own.stderr
    assert (own.summary["read"], own.summary["skipped"]) == (1, 0)
    assert [tuple(r) for r in query(db_url, "SELECT label FROM app_predictions")] == [("negative",)]
    assert [tuple(r) for r in query(db_url, "SELECT label FROM predictions")] == [("positive",)]


def test_an_id_column_that_is_not_a_unique_key_is_refused_on_both_databases(db_url: str) -> None:
    execute_sql(db_url, "CREATE TABLE reviews (id integer, text text)",
             "INSERT INTO reviews VALUES (1, 'great phone'), (1, 'awful phone'), (2, 'fine')")  # fmt: skip
    for chunk in ("1", "1000"):
        run = score_in_process("--source", db_url, "--chunk-size", chunk)
        assert run.returncode == 1, run.stderr
        assert "--id-column 'id' is not a unique key of table 'reviews'" in run.stderr
        assert "Traceback" not in run.stderr and run.summary["exit_code"] == 1
    assert not query(db_url, "SELECT 1 FROM reviews WHERE 1 = 0")
    engine = engine_for(db_url)
    from sqlalchemy import inspect

    assert not inspect(engine).has_table("predictions")  # refused before anything was created
    engine.dispose()

    # A partial unique index is no key: rows outside its condition share an id (issue 18 item 4).
    execute_sql(db_url, "CREATE TABLE partial (id integer, text text, active integer)",
             "CREATE UNIQUE INDEX partial_id ON partial (id) WHERE active = 1",
             "INSERT INTO partial VALUES (1, 'great phone', 1), (1, 'awful phone', 0), (2, 'fine', 1)")  # fmt: skip
    run = score_in_process("--source", db_url, "--table", "partial", "--predictions-table", "partial_predictions")
    assert run.returncode == 1, run.stderr
    assert "--id-column 'id' is not a unique key of table 'partial'" in run.stderr and "WHERE" in run.stderr

    # A unique index on the column (not the primary key) is a key: accepted.
    execute_sql(db_url, "CREATE TABLE other (rid integer, body text)", "CREATE UNIQUE INDEX other_rid ON other (rid)",
             "INSERT INTO other VALUES (1, 'great phone'), (2, 'awful phone')")  # fmt: skip
    ok = score_in_process("--source", db_url, "--table", "other", "--id-column", "rid", "--text-column", "body",
                          "--predictions-table", "other_predictions")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.summary["read"] == 2


def test_null_ids_are_skipped_and_counted_on_every_run(db_url: str) -> None:
    execute_sql(db_url, "CREATE TABLE reviews (id integer UNIQUE, text text)",
             "INSERT INTO reviews VALUES (NULL, 'no id at all'), (1, 'great phone'), (NULL, 'no id either'), "
             "(2, 'awful phone'), (3, 'fine')")  # fmt: skip
    for night, read in ((1, 3), (2, 0)):
        run = score_in_process("--source", db_url, "--chunk-size", "2")
        assert run.returncode == 0, (night, run.stderr)
        assert run.summary | {"read": read, "null_ids": 2, "total": 3, "exit_code": 0} == run.summary, night
        assert [line for line in run.logs() if line.get("message") == "rows with a NULL id skipped"]
    assert prediction_counts(db_url) == {"rows": 3, "ids": 3, "duplicates": 0}
    shard1 = score_in_process("--source", db_url, "--shard", "1/2")
    assert shard1.summary["null_ids"] == 0  # shard 0 reports them: a sum over shards counts each once


def test_a_mistyped_sqlite_source_creates_no_file(tmp_path: Path) -> None:
    missing = tmp_path / "review.db"
    run = score_in_process("--source", f"sqlite:///{missing}")
    assert run.returncode == 1
    assert "no SQLite database at" in run.stderr and str(missing) in run.stderr
    assert not missing.exists()
    assert run.summary["exit_code"] == 1 and "no SQLite database" in run.summary["error"]
    other = f"sqlite:///{tmp_path / 'other.db'}"  # a database without the source table: nothing created in it
    execute_sql(other, "CREATE TABLE stuff (id INTEGER PRIMARY KEY, text TEXT)")
    wrong = score_in_process("--source", other)
    assert wrong.returncode == 1 and "table 'reviews' does not exist" in wrong.stderr
    assert [name for (name,) in query(other, "SELECT name FROM sqlite_master WHERE type = 'table'")] == ["stuff"]


def test_load_reviews_twice_does_not_double_the_table(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from reviewserve.cli import main

    data = tmp_path / "reviews.txt"
    data.write_text("Great phone\t1\nAwful battery\t0\n")
    url = f"sqlite:///{tmp_path / 'reviews.db'}"
    runner = CliRunner()
    first = runner.invoke(main, ["load-reviews", "--target", url, str(data)])
    assert first.exit_code == 0 and json.loads(first.stdout) == {"table": "reviews", "loaded": 2}
    again = runner.invoke(main, ["load-reviews", "--target", url, str(data)])
    assert again.exit_code == 1 and "already holds 2 reviews" in again.output and "--replace" in again.output
    assert query(url, "SELECT count(*) FROM reviews")[0][0] == 2
    replaced = runner.invoke(main, ["load-reviews", "--target", url, "--replace", str(data)])
    assert replaced.exit_code == 0 and query(url, "SELECT count(*) FROM reviews")[0][0] == 2
    appended = runner.invoke(main, ["load-reviews", "--target", url, "--append", str(data)])
    assert appended.exit_code == 0 and query(url, "SELECT count(*) FROM reviews")[0][0] == 4


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_last_stdout_line_is_the_summary_when_stopped_by_a_signal(sqlite_url: str, signum: int) -> None:
    rows = 20_000
    make_reviews(sqlite_url, list(enumerate(review_texts(rows), start=1)))
    process = subprocess.Popen(
        score_command("--source", sqlite_url, "--chunk-size", "100"), cwd=ROOT, env=score_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    head = []
    for line in process.stdout:
        head.append(line)
        if '"chunk committed"' in line:
            process.send_signal(signum)
            break
    rest, err = process.communicate(timeout=60)
    run = Run(process.returncode, "".join(head) + rest, err)
    assert run.returncode == 1, run.stderr
    assert "Aborted" not in run.stderr and "Traceback" not in run.stderr
    summary = run.summary
    name = signal.Signals(signum).name
    assert summary["exit_code"] == 1 and summary["error"] == f"stopped by signal {int(signum)} ({name})"
    committed = sum(1 for line in run.logs() if line.get("message") == "chunk committed")
    assert summary["read"] == 100 * committed == prediction_counts(sqlite_url)["rows"]

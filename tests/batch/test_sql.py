"""``reviewserve score`` against real SQLite and PostgreSQL 15 databases, run as a real subprocess."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import pytest
from sqlalchemy import String, Uuid

from reviewserve.model import Predictor
from tests.batch.conftest import (
    execute_sql,
    kill_after,
    make_reviews,
    prediction_counts,
    query,
    review_texts,
    run_score,
    score_env,
    score_in_process,
)

pytestmark = pytest.mark.slow


def test_scores_every_row_with_the_predictor_then_a_rerun_scores_nothing(db_url: str, model_dir: Path) -> None:
    texts = review_texts(250)
    make_reviews(db_url, list(enumerate(texts, start=1)))

    first = run_score("--source", db_url, "--chunk-size", "40")
    assert first.returncode == 0, first.stderr
    assert first.summary | {"read": 250, "scored": 250, "failed": 0, "skipped": 0} == first.summary
    assert len([line for line in first.logs() if line["message"] == "chunk committed"]) == 7  # ceil(250/40)
    assert prediction_counts(db_url) == {"rows": 250, "ids": 250, "duplicates": 0}

    expected = Predictor.load(model_dir).predict(texts)
    stored = query(
        db_url,
        "SELECT review_id, model_name, model_version, label, probability, positive_probability, status, error"
        " FROM predictions ORDER BY review_id",
    )
    for row, want in zip(stored, expected, strict=True):
        assert (row.model_name, row.model_version, row.status, row.error) == ("review-sentiment", "1", "ok", None)
        assert row.label == want.label
        assert row.probability == pytest.approx(want.probability, abs=1e-12)
        assert row.positive_probability == pytest.approx(want.positive_probability, abs=1e-12)

    again = run_score("--source", db_url)
    assert again.returncode == 0, again.stderr
    assert (again.summary["read"], again.summary["skipped"]) == (0, 250)
    assert prediction_counts(db_url)["rows"] == 250


def test_kill_9_mid_run_then_rerun_gives_exactly_one_prediction_per_row(db_url: str) -> None:
    rows = 6000
    make_reviews(db_url, list(enumerate(review_texts(rows), start=1)))
    args = ("--source", db_url, "--chunk-size", "50")

    for _ in range(2):  # two kills in a row, each at a different point of the table
        assert kill_after(args, "chunk committed", 3) == -signal.SIGKILL
        partial = prediction_counts(db_url)
        assert partial["duplicates"] == 0
        assert 150 <= partial["rows"] < rows, partial
        assert partial["rows"] % 50 == 0, partial  # each chunk committed whole or not at all

    before = partial["rows"]
    rerun = run_score(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.summary["read"] == rows - before  # only what was missing
    assert rerun.summary["skipped"] == before
    assert prediction_counts(db_url) == {"rows": rows, "ids": rows, "duplicates": 0}
    missing = query(db_url, "SELECT count(*) FROM reviews r WHERE NOT EXISTS "
                            "(SELECT 1 FROM predictions p WHERE p.review_id = r.id)")  # fmt: skip
    assert missing[0][0] == 0


def test_a_new_model_version_scores_everything_again_beside_the_old_results(sqlite_url: str, model_copy: Path) -> None:
    make_reviews(sqlite_url, list(enumerate(review_texts(120), start=1)))
    assert score_in_process("--source", sqlite_url).returncode == 0

    card = json.loads((model_copy / "card.json").read_text())
    card["version"] = "2"  # the sha256 in the card covers the model file only: this card is valid
    (model_copy / "card.json").write_text(json.dumps(card))
    second = score_in_process("--source", sqlite_url, "--model", str(model_copy))
    assert second.returncode == 0, second.stderr
    assert (second.summary["version"], second.summary["read"], second.summary["skipped"]) == ("2", 120, 0)

    versions = query(sqlite_url, "SELECT model_version, count(*) FROM predictions GROUP BY 1 ORDER BY 1")
    assert [tuple(v) for v in versions] == [("1", 120), ("2", 120)]
    assert score_in_process("--source", sqlite_url, "--model", str(model_copy)).summary["read"] == 0


@pytest.mark.parametrize("key", ["integer", "text"])
def test_shards_running_at_once_cover_every_row_exactly_once(db_url: str, key: str) -> None:
    import subprocess

    from tests.batch.conftest import score_command
    from tests.conftest import ROOT

    rows = 900
    if key == "integer":
        data = [(i, t) for i, t in zip(range(-100, rows - 100), review_texts(rows), strict=True)]  # negative ids too
        make_reviews(db_url, data)
    else:
        make_reviews(db_url, [(f"k-{i:05d}", t) for i, t in enumerate(review_texts(rows))], id_type=String(40))
    shards = 3
    processes = [
        subprocess.Popen(
            score_command("--source", db_url, "--shard", f"{k}/{shards}", "--chunk-size", "50"),
            cwd=ROOT,
            env=score_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(shards)
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
    reads = [json.loads(out.splitlines()[-1])["read"] for out, _ in outputs]
    totals = [json.loads(out.splitlines()[-1])["total"] for out, _ in outputs]
    assert all(r > 0 for r in reads), reads
    assert sum(reads) == rows and totals == reads  # disjoint: no row was read by two shards
    assert prediction_counts(db_url) == {"rows": rows, "ids": rows, "duplicates": 0}


def test_uuid_keys_on_postgresql(pg_server: object) -> None:
    url = pg_server.create_database(f"t_{uuid.uuid4().hex[:12]}")  # type: ignore[attr-defined]
    keys = [uuid.uuid4() for _ in range(300)]
    make_reviews(url, list(zip(keys, review_texts(300), strict=True)), id_type=Uuid())
    reads = []
    for k in range(2):
        run = score_in_process("--source", url, "--shard", f"{k}/2", "--chunk-size", "64")
        assert run.returncode == 0, run.stderr
        reads.append(run.summary["read"])
    assert sum(reads) == 300 and min(reads) > 0
    assert prediction_counts(url) == {"rows": 300, "ids": 300, "duplicates": 0}
    column_type = query(url, "SELECT data_type FROM information_schema.columns "
                             "WHERE table_name = 'predictions' AND column_name = 'review_id'")  # fmt: skip
    assert column_type[0][0] == "uuid"
    stored = {row[0] for row in query(url, "SELECT review_id FROM predictions")}
    assert stored == set(keys)


def test_bad_rows_get_an_error_row_and_exit_code_3(db_url: str) -> None:
    good = review_texts(5)
    rows = [
        (1, good[0]),
        (2, None),
        (3, ""),
        (4, " \t\n "),
        (5, "x" * 81),
        (6, good[1]),
    ]
    make_reviews(db_url, rows)
    run = score_in_process("--source", db_url, MAX_REVIEW_CHARS="80")
    assert run.returncode == 3, run.stderr
    assert run.summary | {"read": 6, "scored": 2, "failed": 4, "exit_code": 3} == run.summary
    stored = {r.review_id: r for r in query(db_url, "SELECT * FROM predictions")}
    assert {k: r.status for k, r in stored.items()} == {
        1: "ok",
        2: "error",
        3: "error",
        4: "error",
        5: "error",
        6: "ok",
    }
    assert stored[2].error.startswith("null_review")
    assert stored[3].error.startswith("empty_review") and stored[4].error.startswith("empty_review")
    assert stored[5].error.startswith("review_too_long") and "81 characters" in stored[5].error
    assert stored[2].label is None and stored[2].probability is None
    # errors are results too: a rerun does not retry them unless asked
    assert score_in_process("--source", db_url).summary["read"] == 0
    retry = score_in_process("--source", db_url, "--retry-errors", MAX_REVIEW_CHARS="100")
    assert (retry.summary["read"], retry.summary["scored"], retry.returncode) == (4, 1, 3)
    assert prediction_counts(db_url)["rows"] == 6


def test_text_sqlite_cannot_decode_or_non_text_values_are_error_rows(sqlite_url: str) -> None:
    make_reviews(sqlite_url, [(1, "A lovely little phone")])
    engine_url = sqlite_url.removeprefix("sqlite:///")
    import sqlite3

    with sqlite3.connect(engine_url) as conn:  # what SQLite's dynamic typing lets other writers store
        conn.execute("INSERT INTO reviews VALUES (2, CAST(x'fffe41' AS TEXT))")  # TEXT that is not UTF-8
        conn.execute("INSERT INTO reviews VALUES (3, x'00ff')")  # a BLOB in the text column
    run = score_in_process("--source", sqlite_url)
    assert run.returncode == 3, run.stderr
    stored = {r.review_id: r for r in query(sqlite_url, "SELECT * FROM predictions")}
    assert stored[1].status == "ok"
    assert stored[2].status == stored[3].status == "error"
    assert "not UTF-8 text" in stored[2].error and "not UTF-8 text" in stored[3].error


def test_odd_identifiers_are_quoted(db_url: str) -> None:
    table, id_column, text_column = 'My "Odd" Reviews; DROP TABLE x', "Review ID", 'Body"Text'
    predictions = "Pred Table'Quote"
    make_reviews(db_url, list(enumerate(review_texts(80), start=1)), table=table, id_column=id_column,
                 text_column=text_column)  # fmt: skip
    args = ("--source", db_url, "--table", table, "--id-column", id_column, "--text-column", text_column,
            "--predictions-table", predictions, "--chunk-size", "30")  # fmt: skip
    run = score_in_process(*args, "--shard", "0/2")
    assert run.returncode == 0, run.stderr
    rest = score_in_process(*args, "--shard", "1/2")
    assert rest.returncode == 0, rest.stderr
    assert run.summary["read"] + rest.summary["read"] == 80
    assert prediction_counts(db_url, predictions) == {"rows": 80, "ids": 80, "duplicates": 0}
    assert score_in_process(*args).summary["read"] == 0


def test_dry_run_counts_and_writes_nothing(db_url: str) -> None:
    make_reviews(db_url, list(enumerate(review_texts(70), start=1)))
    dry = score_in_process("--source", db_url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert (dry.summary["would_score"], dry.summary["total"], dry.summary["read"]) == (70, 70, 0)
    assert not query(db_url, "SELECT 1 FROM reviews WHERE 1 = 0")  # the database is fine
    score_in_process("--source", db_url, "--chunk-size", "20")
    assert score_in_process("--source", db_url, "--dry-run").summary["would_score"] == 0


def test_clear_errors_for_a_wrong_table_column_shard_or_database(sqlite_url: str, tmp_path: Path) -> None:
    make_reviews(sqlite_url, [(1, "fine")])
    no_table = score_in_process("--source", sqlite_url, "--table", "nope")
    assert no_table.returncode == 1 and "table 'nope' does not exist" in no_table.stderr
    assert "Traceback" not in no_table.stderr
    no_column = score_in_process("--source", sqlite_url, "--text-column", "body")
    assert no_column.returncode == 1 and "--text-column 'body' is not a column" in no_column.stderr
    assert "['id', 'text']" in no_column.stderr
    bad_shard = score_in_process("--source", sqlite_url, "--shard", "2/2")
    assert bad_shard.returncode == 2 and "--shard" in bad_shard.stderr
    # The last stdout line is the summary for every exit code (issue 17 item 7), a usage error's included.
    assert bad_shard.summary["exit_code"] == 2 and "--shard" in bad_shard.summary["error"]
    mistyped = score_in_process("--source", sqlite_url, "--chunksize", "20")
    assert mistyped.returncode == 2 and mistyped.summary | {"read": 0, "exit_code": 2} == mistyped.summary
    assert "--chunksize" in mistyped.summary["error"] and "--chunksize" in mistyped.stderr
    unreachable = score_in_process("--source", "postgresql://nobody@127.0.0.1:1/none", "--retry-for", "0")
    assert unreachable.returncode == 1 and "Traceback" not in unreachable.stderr
    assert "Connection refused" in unreachable.stderr and len(unreachable.stderr.strip().splitlines()) == 1
    assert unreachable.summary | {"exit_code": 1, "read": 0} == unreachable.summary
    other = score_in_process("--source", "mysql://u@h/db")
    assert other.returncode == 1 and "not supported" in other.stderr
    clash = score_in_process("--source", sqlite_url, "--predictions-table", "reviews")
    assert clash.returncode == 1 and "not a predictions table" in clash.stderr


def _predictions_with_trigger(url: str, pg_sql: tuple[str, ...], sqlite_sql: tuple[str, ...]) -> None:
    """Create the predictions table before the job (as the job would), then add a test trigger to it."""
    from sqlalchemy import Integer, MetaData

    from reviewserve.batch.sql import predictions_table
    from tests.batch.conftest import engine_for

    engine = engine_for(url)
    predictions_table(MetaData(), "predictions", Integer()).create(engine)
    with engine.begin() as conn:
        for statement in pg_sql if engine.dialect.name == "postgresql" else sqlite_sql:
            conn.exec_driver_sql(statement)
    engine.dispose()


def test_a_database_error_while_writing_stops_the_job_with_exit_code_1(db_url: str) -> None:
    # The write of the third chunk (ids 101-150) fails inside the database (a trigger): the job stops
    # there, with the database's message, and nothing after the failed chunk is written.
    rows = 3000
    make_reviews(db_url, list(enumerate(review_texts(rows), start=1)))
    _predictions_with_trigger(
        db_url,
        (
            "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.review_id = 120 THEN "
            "RAISE EXCEPTION 'boom at review 120'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER boom BEFORE INSERT ON predictions FOR EACH ROW EXECUTE FUNCTION boom()",
        ),
        ("CREATE TRIGGER boom BEFORE INSERT ON predictions WHEN NEW.review_id = 120 "
         "BEGIN SELECT RAISE(ABORT, 'boom at review 120'); END",),
    )  # fmt: skip
    failed = run_score("--source", db_url, "--chunk-size", "50")
    assert failed.returncode == 1, failed.stderr
    assert "boom at review 120" in failed.stderr and "Traceback" not in failed.stderr
    logs = [json.loads(line) for line in failed.stdout.splitlines() if line.startswith("{")]
    assert [line for line in logs if "exit_code" in line] == [failed.summary]  # the last line, once
    assert failed.summary | {"exit_code": 1, "read": 100, "scored": 100, "total": rows} == failed.summary
    assert "boom at review 120" in failed.summary["error"] and "\n" not in failed.summary["error"]
    assert [line["chunk"] for line in logs if line.get("message") == "chunk committed"] == [1, 2]
    # Only the two chunks before the failed one (the next chunk was already read ahead: not written).
    assert prediction_counts(db_url) == {"rows": 100, "ids": 100, "duplicates": 0}

    execute_sql(db_url, "DROP TRIGGER boom ON predictions" if db_url.startswith("postgresql") else "DROP TRIGGER boom")
    rerun = run_score("--source", db_url, "--chunk-size", "500")
    assert rerun.returncode == 0, rerun.stderr
    assert (rerun.summary["read"], rerun.summary["skipped"]) == (rows - 100, 100)
    assert prediction_counts(db_url) == {"rows": rows, "ids": rows, "duplicates": 0}


def test_a_copy_error_on_postgresql_is_a_clean_database_error(pg_server: object) -> None:
    # The PostgreSQL write COPYs into a stage table shaped like the predictions table; a predictions
    # table whose label column is an integer makes that COPY fail (psycopg error outside SQLAlchemy).
    url = pg_server.create_database(f"t_{uuid.uuid4().hex[:12]}")  # type: ignore[attr-defined]
    make_reviews(url, list(enumerate(review_texts(20), start=1)))
    execute_sql(url, "CREATE TABLE predictions (review_id integer, model_name text, model_version text, label integer,"
               " probability float, positive_probability float, status text, error text, scored_at timestamptz,"
               " PRIMARY KEY (review_id, model_name, model_version))")  # fmt: skip
    run = run_score("--source", url)
    assert run.returncode == 1, run.stderr
    assert "invalid input syntax for type integer" in run.stderr
    assert "Traceback" not in run.stderr
    assert query(url, "SELECT count(*) FROM predictions")[0][0] == 0


def test_kill_9_while_a_chunk_is_being_written_then_rerun_gives_exactly_once(pg_server: object) -> None:
    # Each chunk's write sleeps 0.3 s in the database (after the COPY into the stage table, inside the
    # INSERT ... SELECT), so the kill right after the 3rd commit lands while chunk 4 is being written.
    url = pg_server.create_database(f"t_{uuid.uuid4().hex[:12]}")  # type: ignore[attr-defined]
    rows = 2000
    make_reviews(url, list(enumerate(review_texts(rows), start=1)))
    _predictions_with_trigger(
        url,
        (
            "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.3); "
            "RETURN NULL; END $$",
            "CREATE TRIGGER slow AFTER INSERT ON predictions FOR EACH STATEMENT EXECUTE FUNCTION slow()",
        ),
        (),
    )
    args = ("--source", url, "--chunk-size", "50")
    assert kill_after(args, "chunk committed", 3) == -signal.SIGKILL
    assert prediction_counts(url) == {"rows": 150, "ids": 150, "duplicates": 0}  # whole chunks only

    execute_sql(url, "DROP TRIGGER slow ON predictions")
    rerun = run_score(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert (rerun.summary["read"], rerun.summary["skipped"]) == (rows - 150, 150)
    assert prediction_counts(url) == {"rows": rows, "ids": rows, "duplicates": 0}


def test_sigterm_during_a_write_exits_1_and_leaves_only_whole_chunks(pg_server: object) -> None:
    import subprocess
    import time

    from tests.batch.conftest import score_command
    from tests.conftest import ROOT

    url = pg_server.create_database(f"t_{uuid.uuid4().hex[:12]}")  # type: ignore[attr-defined]
    rows = 2000
    make_reviews(url, list(enumerate(review_texts(rows), start=1)))
    _predictions_with_trigger(
        url,
        (
            "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.3); "
            "RETURN NULL; END $$",
            "CREATE TRIGGER slow AFTER INSERT ON predictions FOR EACH STATEMENT EXECUTE FUNCTION slow()",
        ),
        (),
    )
    process = subprocess.Popen(
        score_command("--source", url, "--chunk-size", "50"), cwd=ROOT, env=score_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    logged = 0
    for line in process.stdout:
        if line.startswith("{") and json.loads(line).get("message") == "chunk committed":
            logged += 1
            if logged == 2:
                time.sleep(0.1)  # in chunk 3's write (0.3 s)
                process.send_signal(signal.SIGTERM)
                break
    rest, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert "stopped by signal" in err and "Traceback" not in err
    logged += sum(1 for line in rest.splitlines() if '"chunk committed"' in line)
    stored = prediction_counts(url)
    # Every chunk in the table was logged as committed, and each is whole (chunk 3's write either
    # finished before the signal was handled or was rolled back).
    assert stored["duplicates"] == 0 and stored["rows"] % 50 == 0
    assert stored["rows"] == 50 * logged and logged in (2, 3), (stored, logged)

    execute_sql(url, "DROP TRIGGER slow ON predictions")
    rerun = run_score("--source", url, "--chunk-size", "500")
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.summary["read"] == rows - stored["rows"]
    assert prediction_counts(url) == {"rows": rows, "ids": rows, "duplicates": 0}


def test_postgresql_reads_scan_only_the_predictions_after_the_last_id(pg_server: object) -> None:
    # Regression: without the redundant `review_id > :last` inside NOT EXISTS, each page scanned the whole
    # predictions index (a merge anti-join from its first entry): quadratic over a run.
    from reviewserve.batch.sql import SqlStore

    url = pg_server.create_database(f"t_{uuid.uuid4().hex[:12]}")  # type: ignore[attr-defined]
    rows = 6000
    make_reviews(url, list(enumerate(review_texts(rows), start=1)))
    execute_sql(url, "ANALYZE reviews")
    assert run_score("--source", url, "--chunk-size", "1000").returncode == 0
    execute_sql(url, "DELETE FROM predictions WHERE review_id > 5000")
    store = SqlStore(url, "reviews", model_name="review-sentiment", model_version="1")
    store.analyze()
    try:
        _, later = store.page_queries(200)
        compiled = later.compile(store.engine)
        with store.engine.connect() as conn:
            setting = conn.exec_driver_sql("SHOW max_parallel_workers_per_gather").scalar_one()
            plan = conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + str(compiled), {**compiled.params, "last": 5000}
            ).scalar_one()
            ids = [r[0] for r in conn.execute(later, {"last": 4900}).all()]
    finally:
        store.close()
    assert setting == "0"  # the job's sessions never start parallel workers for a page

    def nodes(node: dict[str, object]) -> list[dict[str, object]]:
        return [node, *(n for child in node.get("Plans", []) for n in nodes(child))]  # type: ignore[attr-defined]

    scanned = [n for n in nodes(plan[0]["Plan"]) if n.get("Relation Name") == "predictions"]
    assert scanned, plan
    assert all(n["Actual Rows"] * n["Actual Loops"] <= 200 for n in scanned), scanned  # not 5,000
    assert ids == list(range(5001, 5201))  # the page itself: only rows without a prediction

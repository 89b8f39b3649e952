"""Files mode: CSV, JSON Lines and Parquet, local and in S3 (moto's server), reruns and kill -9."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tests.batch import servers
from tests.batch.conftest import kill_after, review_texts, run_score, score_in_process

pytestmark = pytest.mark.slow
OUT_COLUMNS = ["model_name", "model_version", "label", "probability", "positive_probability", "status", "error",
               "scored_at"]  # fmt: skip


def write_inputs(folder: Path, rows: int = 30) -> dict[str, int]:
    """One CSV (with ids), one JSONL (with ids, a bad line, a null text), one Parquet (no id column)."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = review_texts(rows)
    pacsv.write_csv(pa.table({"id": list(range(rows)), "text": texts}), folder / "a.csv")
    lines = [json.dumps({"id": f"j{i}", "text": t}) for i, t in enumerate(texts)]
    lines[3] = "{not json"
    lines[4] = json.dumps({"id": "j4", "text": None})
    (folder / "b.jsonl").write_text("\n".join(lines) + "\n")
    pq.write_table(pa.table({"text": texts, "stars": list(range(rows))}), folder / "c.parquet")
    (folder / "notes.md").write_text("not an input")
    return {"a.csv": rows, "b.jsonl": rows, "c.parquet": rows}


def read_output(path: Path) -> pa.Table:
    if path.suffix == ".csv":
        return pacsv.read_csv(path)
    if path.suffix == ".parquet":
        return pq.read_table(path)
    return pa.Table.from_pylist([json.loads(line) for line in path.read_text().splitlines()])


def test_csv_jsonl_parquet_scored_one_output_each_and_a_rerun_skips_them(tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "in")
    run = score_in_process("--source", str(tmp_path / "in" / "*"), "--chunk-size", "8")
    assert run.returncode == 3, run.stderr  # the JSONL file holds two bad rows
    finished = {"files": 3, "files_skipped": 0, "files_done": 3, "files_pending": 0}  # at the end of the run
    assert run.summary | {"read": 90, "failed": 2, **finished} == run.summary

    out = tmp_path / "in" / "predictions" / "review-sentiment" / "1"
    for name, rows in inputs.items():
        table = read_output(out / name)
        assert table.num_rows == rows
        id_name = "row" if name.endswith(".parquet") else "id"
        assert table.column_names == [id_name, *OUT_COLUMNS]
        marker = json.loads((out / "_done" / f"{name}.json").read_text())
        assert marker["rows"] == rows
    jsonl = read_output(out / "b.jsonl").to_pylist()
    assert [r["id"] for r in jsonl[:5]] == ["j0", "j1", "j2", None, "j4"]
    assert jsonl[3]["status"] == "error" and jsonl[3]["error"].startswith("invalid_json: line 4")
    assert jsonl[4]["status"] == "error" and jsonl[4]["error"].startswith("null_review")
    assert read_output(out / "c.parquet").column("row").to_pylist() == list(range(30))
    assert set(read_output(out / "a.csv").column("status").to_pylist()) == {"ok"}
    assert not list(out.rglob("*.inprogress"))

    again = score_in_process("--source", str(tmp_path / "in" / "*"))
    assert again.returncode == 0, again.stderr
    files = {"files_skipped": 3, "files_done": 3, "files_pending": 0}
    assert again.summary | {"read": 0, "skipped": 90, **files} == again.summary

    (tmp_path / "in" / "a.csv").write_text("id,text\n1,changed file gets scored again\n")
    changed = score_in_process("--source", str(tmp_path / "in" / "*"))
    assert (changed.summary["read"], changed.summary["files_skipped"], changed.summary["files_done"]) == (1, 2, 3)


def test_a_killed_run_redoes_only_the_unfinished_file(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("1.csv", "2.csv", "3.csv"):
        pacsv.write_csv(pa.table({"id": list(range(1500)), "text": review_texts(1500)}), folder / name)
    out = tmp_path / "out"
    args = ("--source", str(folder / "*.csv"), "--output", str(out), "--chunk-size", "50")
    kill_after(args, "file finished", 1)
    done = out / "review-sentiment" / "1"
    named = done / str(folder).lstrip("/")  # a given --output names each output by its input's whole path
    finished = sorted(p.name for p in (done / "_done" / str(folder).lstrip("/")).glob("*.json"))
    assert finished == ["1.csv.json"]
    first_output = (named / "1.csv").stat()
    assert not (named / "2.csv").exists()  # the file in flight was never published under its name

    rerun = run_score(*args)
    assert rerun.returncode == 0, rerun.stderr
    files = {"files_skipped": 1, "files_done": 3, "files_pending": 0}
    assert rerun.summary | {"read": 3000, "skipped": 1500, **files} == rerun.summary
    assert (named / "1.csv").stat().st_mtime_ns == first_output.st_mtime_ns  # untouched
    for name in ("1.csv", "2.csv", "3.csv"):
        assert read_output(named / name).num_rows == 1500
    assert not list(done.rglob("*.inprogress"))


def test_files_in_s3_through_a_local_s3_server(tmp_path: Path) -> None:
    import boto3
    import s3fs

    write_inputs(tmp_path / "in", rows=20)
    with servers.moto_s3() as endpoint:
        env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
               "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                          region_name="us-east-1")  # fmt: skip
        s3.create_bucket(Bucket="logs")
        for path in (tmp_path / "in").iterdir():
            s3.upload_file(str(path), "logs", f"2026/11/{path.name}")

        run = score_in_process("--source", "s3://logs/2026/*/*", "--output", "s3://logs/scored", **env)
        assert run.returncode == 3, run.stderr
        assert (run.summary["read"], run.summary["files"]) == (60, 3)
        fs = s3fs.S3FileSystem(key="test", secret="test", endpoint_url=endpoint)
        names = ("logs/2026/11/a.csv", "logs/2026/11/b.jsonl", "logs/2026/11/c.parquet",
                 "_done/logs/2026/11/a.csv.json", "_done/logs/2026/11/b.jsonl.json",
                 "_done/logs/2026/11/c.parquet.json")  # fmt: skip
        assert sorted(fs.find("logs/scored")) == sorted(f"logs/scored/review-sentiment/1/{n}" for n in names)
        with fs.open("logs/scored/review-sentiment/1/logs/2026/11/c.parquet", "rb") as handle:
            assert pq.read_table(handle).num_rows == 20

        again = score_in_process("--source", "s3://logs/2026/*/*", "--output", "s3://logs/scored", **env)
        assert again.returncode == 0, again.stderr
        assert (again.summary["read"], again.summary["files_done"]) == (0, 3)


def test_files_errors_are_clear(tmp_path: Path) -> None:
    nothing = score_in_process("--source", str(tmp_path / "*.csv"))
    assert nothing.returncode == 1 and "no CSV/JSONL/Parquet input matches" in nothing.stderr
    pacsv.write_csv(pa.table({"id": [1], "body": ["hello"]}), tmp_path / "x.csv")
    no_text = score_in_process("--source", str(tmp_path / "x.csv"))
    assert no_text.returncode == 1 and "no text column 'text'" in no_text.stderr and "'body'" in no_text.stderr
    assert "Traceback" not in no_text.stderr
    assert os.listdir(tmp_path) == ["x.csv"] or "predictions" in os.listdir(tmp_path)

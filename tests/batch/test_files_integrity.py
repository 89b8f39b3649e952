"""Files mode integrity (issue 18 items 2, 3, 6, 7): two jobs on one input, inputs sharing a name, an input
that changes while it is scored, an --output written in a non-normal form inside the glob."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tests.batch import servers
from tests.batch.conftest import Run, review_texts, score_command, score_env, score_in_process
from tests.conftest import MODEL_DIR, ROOT

pytestmark = pytest.mark.slow


def test_two_jobs_on_the_same_inputs_never_write_one_output(tmp_path: Path) -> None:
    folder = tmp_path / "f3"
    folder.mkdir()
    rows = 20_000
    for name in ("a", "b", "c"):
        pq.write_table(pa.table({"id": list(range(rows)), "text": review_texts(rows)}), folder / f"{name}.parquet")
    args = ("--source", str(folder / "*.parquet"), "--chunk-size", "500")
    pipes: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    first = subprocess.Popen(score_command(*args), cwd=ROOT, env=score_env(), **pipes)
    time.sleep(0.5)
    second = subprocess.Popen(score_command(*args), cwd=ROOT, env=score_env(), **pipes)
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    runs = [Run(p.returncode, out, err) for p, (out, err) in zip((first, second), outputs, strict=True)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert sum(run.summary["read"] for run in runs) == 3 * rows  # no input scored by both jobs
    out = folder / "predictions" / "review-sentiment" / "1"
    for name in ("a", "b", "c"):
        table = pq.read_table(out / f"{name}.parquet")
        assert table.num_rows == rows and table.column("id").to_pylist() == list(range(rows))
        assert json.loads((out / "_done" / f"{name}.parquet.json").read_text())["rows"] == rows
    assert not list(out.rglob("*.inprogress")) and not list(out.rglob("*.claim"))
    again = score_in_process(*args)
    assert (again.summary["read"], again.summary["files_skipped"]) == (0, 3)


def test_a_claim_is_exclusive_on_a_local_folder_and_on_s3(tmp_path: Path) -> None:
    import s3fs
    from fsspec.implementations.local import LocalFileSystem

    from reviewserve.batch.files import Claim

    def check(fs: Any, path: str) -> None:
        one, two = Claim(fs, path, "job-one", 300), Claim(fs, path, "job-two", 300)
        assert one.acquire()
        assert not two.acquire() and two.holder and two.holder["job"] == "job-one"
        two.release()  # not its claim: nothing removed
        assert not Claim(fs, path, "job-three", 300).acquire()
        one.release()
        assert two.acquire()
        two.release()
        expired = Claim(fs, path, "job-four", -1)  # a lease already run out: a stopped job's claim
        assert expired.acquire()
        assert Claim(fs, path, "job-five", 300).acquire()  # taken over

    check(LocalFileSystem(), str(tmp_path / "claims" / "x.csv.claim"))
    with servers.moto_s3() as endpoint:
        fs = s3fs.S3FileSystem(key="test", secret="test", endpoint_url=endpoint)
        fs.mkdir("scored")
        check(fs, "scored/_claims/x.csv.claim")


def test_inputs_sharing_a_name_keep_their_own_outputs(tmp_path: Path) -> None:
    for day, text in (("a", "I love it, wonderful"), ("b", "crashes constantly, awful")):
        (tmp_path / "c" / day).mkdir(parents=True)
        pacsv.write_csv(pa.table({"id": [1], "text": [text]}), tmp_path / "c" / day / "x.csv")
    out = tmp_path / "c" / "out"
    for day in ("a", "b", "a"):
        run = score_in_process("--source", str(tmp_path / "c" / day / "x.csv"), "--output", str(out))
        assert run.returncode == 0, run.stderr
    base = out / "review-sentiment" / "1" / str(tmp_path).lstrip("/") / "c"
    labels = {day: pacsv.read_csv(base / day / "x.csv").column("label").to_pylist() for day in ("a", "b")}
    assert labels == {"a": ["positive"], "b": ["negative"]}
    assert run.summary["read"] == 0  # the third run: a's own record says it is done


def test_an_input_changed_while_it_is_scored_is_scored_again(tmp_path: Path) -> None:
    from reviewserve.batch.files import FileStore
    from reviewserve.batch.job import run_job
    from reviewserve.model import Predictor

    source = tmp_path / "in" / "r.jsonl"
    source.parent.mkdir()
    texts = review_texts(15)
    source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts[:10])))
    store = FileStore(str(source), model_name="review-sentiment", model_version="1")
    write = store.write
    appended = []

    def write_then_append(ids: Any, results: Any) -> None:
        write(ids, results)
        if not appended:  # the reader has read the whole file; 5 lines arrive while it is scored
            time.sleep(0.02)  # a later mtime, whatever the file system's timestamp resolution
            with source.open("a") as handle:
                handle.write("".join(json.dumps({"id": i, "text": texts[i]}) + "\n" for i in range(10, 15)))
            appended.append(True)

    store.write = write_then_append  # type: ignore[method-assign]
    summary = run_job(store, Predictor.load(MODEL_DIR), chunk_size=100).as_dict()
    assert summary["files_changed"] == 1 and summary["files_done"] == 1
    out = tmp_path / "in" / "predictions" / "review-sentiment" / "1"
    lines = (out / "r.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == list(range(15))
    marker = json.loads((out / "_done" / "r.jsonl.json").read_text())
    assert (marker["rows"], marker["size"]) == (15, source.stat().st_size)
    assert score_in_process("--source", str(source)).summary["read"] == 0


def test_an_output_in_a_non_normal_form_inside_the_glob_is_not_read_back(tmp_path: Path, monkeypatch: Any) -> None:
    data = tmp_path / "data" / "2026"
    data.mkdir(parents=True)
    (data / "r.jsonl").write_text(json.dumps({"id": 1, "text": "great"}) + "\n")
    monkeypatch.chdir(tmp_path)
    for night in (1, 2):
        run = score_in_process("--source", "data/**/*.jsonl", "--output", "data/./out")
        assert run.returncode == 0, run.stderr
        assert run.summary["files"] == 1, (night, run.summary)
    assert run.summary["read"] == 0


def test_an_s3_object_overwritten_while_it_is_scored_is_scored_again(tmp_path: Path, monkeypatch: Any) -> None:
    """Item 6 on S3: the ETag is read fresh before opening and after reading (not from the glob's cached
    listing), so an object overwritten while it is scored is scored again, and the record holds its new ETag."""
    import boto3
    import s3fs

    from reviewserve.batch.files import FileStore
    from reviewserve.batch.job import run_job
    from reviewserve.model import Predictor

    texts = review_texts(15)

    def body(count: int) -> bytes:
        return "".join(json.dumps({"id": i, "text": texts[i]}) + "\n" for i in range(count)).encode()

    with servers.moto_s3() as endpoint:
        for name, value in (("AWS_ENDPOINT_URL", endpoint), ("AWS_ACCESS_KEY_ID", "test"),
                            ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
            monkeypatch.setenv(name, value)
        s3fs.S3FileSystem.clear_instance_cache()  # an instance cached by another test talks to another endpoint
        try:
            s3 = boto3.client("s3", endpoint_url=endpoint)
            s3.create_bucket(Bucket="inbox")
            s3.put_object(Bucket="inbox", Key="day/r.jsonl", Body=body(10))
            store = FileStore("s3://inbox/day/*.jsonl", output="s3://inbox/scored", model_name="review-sentiment",
                              model_version="1")  # fmt: skip
            write = store.write
            replaced = []

            def write_then_replace(ids: Any, results: Any) -> None:
                write(ids, results)
                if not replaced:  # the reader has read the whole object; a new version of it arrives
                    s3.put_object(Bucket="inbox", Key="day/r.jsonl", Body=body(15))
                    replaced.append(True)

            store.write = write_then_replace  # type: ignore[method-assign]
            summary = run_job(store, Predictor.load(MODEL_DIR), chunk_size=100).as_dict()
            assert (summary["files_changed"], summary["files_done"]) == (1, 1), summary
            fs = s3fs.S3FileSystem(key="test", secret="test", endpoint_url=endpoint, skip_instance_cache=True)
            out = "inbox/scored/review-sentiment/1/inbox/day"
            lines = fs.cat_file(f"{out}/r.jsonl").decode().splitlines()
            assert [json.loads(line)["id"] for line in lines] == list(range(15))
            marker = json.loads(fs.cat_file("inbox/scored/review-sentiment/1/_done/inbox/day/r.jsonl.json"))
            etag = s3.head_object(Bucket="inbox", Key="day/r.jsonl")["ETag"].strip('"')
            assert (marker["rows"], marker["fingerprint"]) == (15, etag)
        finally:
            s3fs.S3FileSystem.clear_instance_cache()  # nor to the next test's

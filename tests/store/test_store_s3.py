"""The model store on moto's S3 server (real HTTP, real gunicorn): fetch, verify, serve, refuse, retry, publish."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from reviewserve.cli import main
from tests.conftest import MODEL_DIR, SEED_REVIEW, Server, free_port
from tests.modelversions import make_version, tamper
from tests.store.conftest import CREDENTIALS, S3

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def push(model_dir: Path, store: str) -> str:
    """``reviewserve model push`` in process; returns the version's URI."""
    result = CliRunner().invoke(main, ["model", "push", str(model_dir), store])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def readyz(server: Server) -> tuple[int, dict]:
    response = requests.get(server.url + "/readyz", timeout=5)
    return response.status_code, response.json()


def wait_reason(server: Server, text: str, timeout: float = 60) -> str:
    """Wait until /readyz is 503 with ``text`` in its reason; return the reason."""
    deadline = time.monotonic() + timeout
    reason = ""
    while time.monotonic() < deadline:
        assert server.process.poll() is None, server.log()
        try:
            status, body = readyz(server)
        except requests.ConnectionError:
            time.sleep(0.1)
            continue
        assert status in (200, 503)
        reason = body.get("reason", "")
        if status == 503 and text in reason:
            return reason
        time.sleep(0.1)
    raise AssertionError(f"no 503 with {text!r} within {timeout}s (last reason {reason!r}):\n{server.log()}")


def test_push_lists_versions_and_never_overwrites(s3: S3, tmp_path: Path) -> None:
    store = s3.bucket() + "/models"
    assert push(MODEL_DIR, store) == f"{store}/review-sentiment/1"
    assert push(make_version(tmp_path / "v2", "2"), store) == f"{store}/review-sentiment/2"

    changed = make_version(tmp_path / "v1-again", "1")
    card = json.loads((changed / "card.json").read_text())
    card["description"] = "a second push of version 1"
    (changed / "card.json").write_text(json.dumps(card))
    refused = CliRunner().invoke(main, ["model", "push", str(changed), store])
    assert refused.exit_code == 1
    assert "review-sentiment/1 already exists" in refused.output
    bucket, _, prefix = store.removeprefix("s3://").partition("/")
    stored = s3.client().get_object(Bucket=bucket, Key=f"{prefix}/review-sentiment/1/card.json")["Body"].read()
    assert stored == (MODEL_DIR / "card.json").read_bytes(), "the published version 1 was changed"

    listed = CliRunner().invoke(main, ["model", "list", store])
    assert listed.exit_code == 0, listed.output
    versions = [json.loads(line) for line in listed.stdout.splitlines()]
    committed = json.loads((MODEL_DIR / "card.json").read_text())
    assert [(v["name"], v["version"], v["uri"]) for v in versions] == [
        ("review-sentiment", "1", f"{store}/review-sentiment/1"),
        ("review-sentiment", "2", f"{store}/review-sentiment/2"),
    ]
    assert all(v["metrics"] == committed["metrics"] and v["metrics"] for v in versions)
    assert versions[0]["created"].startswith(committed["created"][:19])


def test_push_refuses_a_model_that_does_not_verify(s3: S3, model_copy: Path) -> None:
    tamper(model_copy)
    result = CliRunner().invoke(main, ["model", "push", str(model_copy), s3.bucket()])
    assert result.exit_code == 1 and "sha256" in result.output


def test_server_fetches_verifies_and_serves_a_model_from_s3(s3: S3, server_factory, tmp_path: Path) -> None:
    uri = push(make_version(tmp_path / "v7", "7"), s3.bucket())
    cache = tmp_path / "cache"
    server: Server = server_factory(MODEL_URI=uri, MODEL_CACHE_DIR=str(cache), **s3.env)
    status, body = readyz(server)
    assert (status, body["model"]) == (200, {"name": "review-sentiment", "version": "7"})
    for _ in range(4):  # both workers answer with the fetched model
        answer = requests.post(server.url + "/predict", json=SEED_REVIEW, timeout=5)
        assert answer.status_code == 200 and answer.json()["model"]["version"] == "7", answer.text
    [folder] = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "model.skops"]
    records = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    fetched = [r for r in records if r.get("message") == "model fetched"]
    assert fetched and fetched[0]["uri"] == uri
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in server.log()


def test_a_model_file_changed_in_the_bucket_is_refused_and_retried(s3: S3, server_factory, tmp_path: Path) -> None:
    uri = push(MODEL_DIR, s3.bucket())
    tampered = tmp_path / "tampered"
    make_version(tampered, "1")
    tamper(tampered)
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3.client().put_object(Bucket=bucket, Key=f"{key}/model.skops", Body=(tampered / "model.skops").read_bytes())
    server: Server = server_factory(
        wait=False, MODEL_URI=uri, MODEL_CACHE_DIR=str(tmp_path / "cache"), MODEL_RETRY_MAX_SECONDS="1", **s3.env
    )
    reason = wait_reason(server, "refusing to load a file that is not the one the card describes")
    assert "sha256" in reason
    wait_reason(server, "(attempt 3")  # retried with backoff, still refused
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200  # alive: no restart loop
    answer = requests.post(server.url + "/predict", json=SEED_REVIEW, timeout=5)
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "model_not_ready"


def test_a_wrong_model_sha256_is_refused(s3: S3, server_factory, tmp_path: Path) -> None:
    uri = push(MODEL_DIR, s3.bucket())
    server: Server = server_factory(
        wait=False, MODEL_URI=uri, MODEL_SHA256="0" * 64, MODEL_CACHE_DIR=str(tmp_path / "cache"), **s3.env
    )
    reason = wait_reason(server, "MODEL_SHA256 pins " + "0" * 64)
    assert json.loads((MODEL_DIR / "card.json").read_text())["model_sha256"] in reason


def test_store_unreachable_at_start_then_reachable_the_server_turns_ready_without_restart(
    s3: S3, server_factory, tmp_path: Path
) -> None:
    from moto.server import ThreadedMotoServer

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    uri = "s3://late-store/models/review-sentiment/1"
    env = {**s3.env, "AWS_ENDPOINT_URL": endpoint}
    server: Server = server_factory(
        wait=False, MODEL_URI=uri, MODEL_CACHE_DIR=str(tmp_path / "cache"), MODEL_RETRY_MAX_SECONDS="1", **env
    )
    wait_reason(server, "cannot download card.json of " + uri)
    master = server.process.pid
    workers_before = set(server.wait_workers(2))

    late = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    late.start()
    try:
        S3(endpoint).client().create_bucket(Bucket="late-store")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AWS_ENDPOINT_URL", endpoint)
            push(MODEL_DIR, "s3://late-store/models")
        server.wait_ready(timeout=60)
        assert server.process.pid == master and server.process.poll() is None, "the server was restarted"
        # Ready as soon as the first replacement answers; the other old worker may still be draining (SIGTERM),
        # and the arbiter forks its replacement only once it has exited: wait for the whole set to turn over.
        deadline = time.monotonic() + 30
        workers_after = set(server.wait_workers(2))
        while workers_before & workers_after and time.monotonic() < deadline:
            time.sleep(0.1)
            workers_after = set(server.wait_workers(2))
        assert not workers_before & workers_after, "the workers forked before the model loaded still serve"
        for _ in range(6):
            answer = requests.post(server.url + "/predict", json=SEED_REVIEW, timeout=5)
            assert answer.status_code == 200, answer.text
    finally:
        late.stop()
    assert "model loaded after retrying" in server.log()


def test_the_batch_job_scores_with_a_model_from_the_store(s3: S3, tmp_path: Path) -> None:
    from tests.batch.conftest import make_reviews, query, run_score, score_env

    uri = push(make_version(tmp_path / "v3", "3"), s3.bucket())
    url = f"sqlite:///{tmp_path / 'reviews.db'}"
    make_reviews(url, [(i, text) for i, text in enumerate(["great phone", "awful food", "fine"])])
    run = run_score("--source", url, env=score_env(MODEL_URI=uri, MODEL_CACHE_DIR=str(tmp_path / "cache"), **s3.env))
    assert run.returncode == 0, run.stderr + run.stdout
    assert query(url, "SELECT DISTINCT model_version FROM predictions") == [("3",)]
    assert query(url, "SELECT count(*) FROM predictions") == [(3,)]

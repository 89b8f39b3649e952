"""The rendered batch Indexed Job runs under Docker against a real PostgreSQL 15 and fills the predictions table.

The chart's Job (2 shards) is translated pod by pod exactly as the kubelet would run it: user, read-only
root, /tmp emptyDir, dropped capabilities, limits, env (the database URL from the Secret, the completion
index from the downward API) and `$(JOB_COMPLETION_INDEX)` expanded in the args. Both shards run at once
with host networking, so the container reaches PostgreSQL on 127.0.0.1.
"""

from __future__ import annotations

import base64
import copy
import subprocess
from collections.abc import Iterator

import pytest
from docker_settings import render_chart
from dockerpod import DOCKER, translate

from tests.batch import servers
from tests.batch.conftest import make_reviews, prediction_counts, query, review_texts

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]
SHARDS = 2
ROWS = 500


@pytest.fixture(scope="module")
def postgres() -> Iterator[servers.Postgres]:
    with servers.postgres() as pg:
        yield pg


def indexed_pod(job: dict, index: int) -> dict:
    """The Job's pod for one completion index (the controller sets this annotation)."""
    pod_job = copy.deepcopy(job)
    metadata = pod_job["spec"]["template"].setdefault("metadata", {})
    metadata.setdefault("annotations", {})["batch.kubernetes.io/job-completion-index"] = str(index)
    return pod_job


def test_rendered_indexed_job_scores_the_table_under_docker(
    image: str, helm: object, postgres: servers.Postgres
) -> None:
    url = postgres.create_database("batchjob")
    make_reviews(url, list(enumerate(review_texts(ROWS), start=1)))
    docs = render_chart(
        helm,  # type: ignore[arg-type]
        **{"batch.job.enabled": "true", "batch.job.runId": "docker-1", "batch.job.shards": str(SHARDS),
           "batch.databaseSecret.name": "db",
           "batch.databaseSecret.key": "url", "batch.chunkSize": "100"},
    )  # fmt: skip
    job = next(d for d in docs if d["kind"] == "Job")
    secret = {"kind": "Secret", "metadata": {"name": "db"}, "data": {"url": base64.b64encode(url.encode()).decode()}}
    processes = []
    for index in range(SHARDS):
        spec = translate(indexed_pod(job, index), [*docs, secret], pod_name=f"score-{index}")
        assert spec.command_args[:3] == ["score", "--shard", f"{index}/{SHARDS}"]
        assert spec.env["SCORE_SOURCE"] == url
        assert "--read-only" in spec.docker_args and spec.user == "10001:10001"
        cmd = [DOCKER, "run", "--rm", "--network", "host", *spec.docker_args]
        cmd += ["--entrypoint", spec.entrypoint or "", spec.image, *spec.command_args]
        processes.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [p.communicate(timeout=600) for p in processes]
    for process, (out, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, f"{out[-3000:]}\n{err[-3000:]}"
        assert '"exit_code": 0' in out.splitlines()[-1]
    assert prediction_counts(url) == {"rows": ROWS, "ids": ROWS, "duplicates": 0}
    labels = {row[0] for row in query(url, "SELECT DISTINCT label FROM predictions")}
    assert labels == {"positive", "negative"}

"""The batch scoring CronJob and Indexed Job: off by default, wired to `reviewserve score`, hardened, checkov-clean."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

CHECKOV_CONFIG = Path(__file__).with_name("checkov") / "batch-on.yaml"
BATCH_VALUES = ("batch-on-values.yaml",)


def only(kit: Any, docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single manifest of ``kind``."""
    found = kit.by_kind(docs, kind)
    assert len(found) == 1, [d["metadata"]["name"] for d in found]
    return found[0]


def job_specs(kit: Any, docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The Job spec of the Job and of the CronJob's jobTemplate, by kind."""
    return {
        "Job": only(kit, docs, "Job")["spec"],
        "CronJob": only(kit, docs, "CronJob")["spec"]["jobTemplate"]["spec"],
    }


def test_off_by_default(kit: Any) -> None:
    kinds = {d["kind"] for d in kit.render()}
    assert not kinds & {"CronJob", "Job"}


def test_cronjob_schedule_forbids_overlap_and_keeps_history(kit: Any) -> None:
    cron = only(kit, kit.render(BATCH_VALUES), "CronJob")["spec"]
    assert cron["schedule"] == "30 1 * * *" and cron["timeZone"] == "Etc/UTC"
    assert cron["concurrencyPolicy"] == "Forbid"
    assert cron["successfulJobsHistoryLimit"] == 3 and cron["failedJobsHistoryLimit"] == 3
    assert cron["startingDeadlineSeconds"] > 0
    spec = cron["jobTemplate"]["spec"]
    assert spec["backoffLimit"] == 2 and spec["activeDeadlineSeconds"] == 21600


@pytest.mark.parametrize(("kind", "shards"), [("Job", 3), ("CronJob", 2)])
def test_indexed_job_completion_index_is_the_shard(kit: Any, kind: str, shards: int) -> None:
    spec = job_specs(kit, kit.render(BATCH_VALUES))[kind]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == shards
    container = spec["template"]["spec"]["containers"][0]
    assert container["command"] == ["reviewserve"]
    args = container["args"]
    assert args[:3] == ["score", "--shard", f"$(JOB_COMPLETION_INDEX)/{shards}"]
    assert "--retry-errors" in args
    env = {e["name"]: e for e in container["env"]}
    index = env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert index == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert env["SCORE_SOURCE"]["valueFrom"]["secretKeyRef"] == {"name": "reviewserve-db", "key": "url"}
    assert env["SCORE_TABLE"]["value"] == "reviews"
    assert env["PUSHGATEWAY_URL"]["value"] == "http://pushgateway.monitoring:9091"
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    rules = spec["podFailurePolicy"]["rules"]
    assert {"action": "FailJob", "onExitCodes": {"containerName": "score", "operator": "In", "values": [2, 3]}} in rules


def test_batch_pods_are_hardened_like_the_web_pods_and_not_behind_the_service(kit: Any) -> None:
    docs = kit.render(BATCH_VALUES)
    web = kit.deployment(docs)["spec"]["template"]["spec"]
    selector = kit.one(docs, "Service")["spec"]["selector"]
    for spec in job_specs(kit, docs).values():
        pod = spec["template"]["spec"]
        assert pod["securityContext"] == web["securityContext"]
        container = pod["containers"][0]
        assert container["securityContext"] == web["containers"][0]["securityContext"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["automountServiceAccountToken"] is False
        assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
        assert pod["volumes"][0]["emptyDir"]["medium"] == "Memory"
        labels = spec["template"]["metadata"]["labels"]
        assert not selector.items() <= labels.items(), "the Service would route traffic to a scoring pod"
    policy = [p for p in kit.by_kind(docs, "NetworkPolicy") if p["metadata"]["name"].endswith("-batch")]
    assert len(policy) == 1 and policy[0]["spec"]["ingress"] == []


def test_a_secret_name_is_required(kit: Any) -> None:
    res = kit.template(sets=("batch.job.enabled=true",))
    assert res.returncode != 0 and "batch.databaseSecret.name is required" in res.stderr


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("batch.job.shards=0",), "shards"),
        (("batch.chunkSize=0",), "chunkSize"),
        (("batch.cronJob.concurrency=Allow",), "concurrency"),
        (("batch.pushgateway=pushgateway:9091",), "pushgateway"),
    ],
)
def test_schema_rejects_bad_batch_values(kit: Any, sets: tuple[str, ...], message: str) -> None:
    res = kit.template(sets=sets)
    assert res.returncode != 0 and message in res.stderr, res.stderr


def test_checkov_on_the_batch_rendering(kit: Any, tmp_path: Path) -> None:
    """checkov (kubernetes framework) on the batch-on rendering: zero failed, only the documented skips."""
    res = kit.template(BATCH_VALUES)
    assert res.returncode == 0, res.stderr
    (tmp_path / "reviewserve.yaml").write_text(res.stdout)
    proc = subprocess.run(
        [str(kit.checkov), "--config-file", str(CHECKOV_CONFIG), "-d", str(tmp_path), "-o", "json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    report = json.loads(proc.stdout)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, failed
    assert summary["resource_count"] >= 12 and summary["passed"] >= 300, summary
    skipped = {(c["check_id"], c["resource"].split(".")[0]) for c in report["results"]["skipped_checks"]}
    assert skipped == {("CKV_K8S_35", "Job"), ("CKV_K8S_35", "CronJob"), ("CKV_K8S_8", "Pod"), ("CKV_K8S_9", "Pod")}

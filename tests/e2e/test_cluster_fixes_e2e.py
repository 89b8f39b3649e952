"""Issue 16 on a live cluster (kind: `make kind-e2e`): what only a cluster can show.

Item 1: the NetworkPolicy (on in the kind values) lets the Gateway's data plane through. Item 8: the
Gateway publishes the API only. Item 6: turning autoscaling on for a running release keeps its pods.
Item 4: an unrelated upgrade neither re-runs nor deletes a one-off Job. The upgrades use
``--reuse-values`` on the release under test and put it back as it was.
"""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from release import release_selector
from test_cluster import eventually, post_predict

pytestmark = pytest.mark.e2e
CHART = Path(__file__).resolve().parents[2] / "charts" / "reviewserve"


def _helm_upgrade(cluster: Any, *sets: str) -> None:
    if cluster.helm is None:
        pytest.skip("helm not found")
    cmd = [cluster.helm, "upgrade", cluster.release, str(CHART), "-n", cluster.namespace, "--reuse-values",
           "--wait", "--timeout", "5m"]  # fmt: skip
    for s in sets:
        cmd += ["--set", s]
    cmd += ["--kube-context", cluster.context] if cluster.context else []
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=400, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_network_policy_on_and_the_gateway_path_works(cluster: Any) -> None:
    """Item 1: the release runs with its NetworkPolicy (kind enforces it) and /predict answers through
    the Gateway, not only through `helm test`'s own rule."""
    policies = cluster.networking.list_namespaced_network_policy(
        cluster.namespace, label_selector=release_selector(cluster.release)
    ).items
    assert any(p.metadata.name == cluster.fullname for p in policies), [p.metadata.name for p in policies]
    answer = eventually(lambda: post_predict(cluster.gateway_url), timeout=60)
    assert answer["prediction"] in ("positive", "negative")


def test_gateway_publishes_only_the_api(cluster: Any) -> None:
    """Item 8: /metrics and /openapi.json are not routed (404 from the Gateway); /v2 is."""
    assert _status(f"{cluster.gateway_url}/metrics") == 404
    assert _status(f"{cluster.gateway_url}/openapi.json") == 404
    assert _status(f"{cluster.gateway_url}/v2/health/live") == 200


def test_turning_autoscaling_on_keeps_the_running_pods(cluster: Any) -> None:
    """Item 6: a release at 3 replicas without an HPA; the upgrade that turns autoscaling on leaves the
    Deployment at 3 (lookup), never 1, until the HPA acts."""
    _helm_upgrade(cluster, "autoscaling.enabled=false", "replicaCount=3")
    try:
        _helm_upgrade(cluster, "autoscaling.enabled=true")
        replicas = cluster.apps.read_namespaced_deployment(cluster.fullname, cluster.namespace).spec.replicas
        assert replicas == 3
    finally:
        _helm_upgrade(cluster, "autoscaling.enabled=true", "replicaCount=2")


def test_an_unrelated_upgrade_keeps_the_one_off_job(cluster: Any) -> None:
    """Item 4: the Job of a run id is created once; an upgrade with --reuse-values (batch.job.enabled and
    the run id stick) neither deletes nor re-creates it."""
    secret = "e2e-batch-db"
    body = {"metadata": {"name": secret}, "stringData": {"database-url": "sqlite:////tmp/none.db"}}
    cluster.core.create_namespaced_secret(cluster.namespace, body)
    run_id = "e2e-run-1"
    try:
        _helm_upgrade(cluster, f"batch.databaseSecret.name={secret}", "batch.job.enabled=true",
                      f"batch.job.runId={run_id}", "batch.job.shards=1")  # fmt: skip
        jobs = cluster.batch.list_namespaced_job(cluster.namespace, label_selector=f"reviewserve.io/run-id={run_id}")
        [job] = jobs.items
        _helm_upgrade(cluster, "podAnnotations.e2e-bump=1")
        again = cluster.batch.list_namespaced_job(cluster.namespace, label_selector=f"reviewserve.io/run-id={run_id}")
        assert [j.metadata.uid for j in again.items] == [job.metadata.uid]
    finally:
        _helm_upgrade(cluster, "batch.job.enabled=false", "batch.job.runId=", "podAnnotations.e2e-bump=null")
        for j in cluster.batch.list_namespaced_job(cluster.namespace, label_selector="reviewserve.io/run-id").items:
            cluster.batch.delete_namespaced_job(j.metadata.name, cluster.namespace, propagation_policy="Background")
        cluster.core.delete_namespaced_secret(secret, cluster.namespace)

"""End-to-end canary on the cluster (issue 19): both model versions answer through the Gateway in about
the configured proportion, then `helm rollback` returns to one version.

Needs a second model version the cluster can fetch: ``REVIEWSERVE_E2E_CANARY_MODEL_URI`` (e.g.
``s3://models/review-sentiment/2`` on a MinIO in the cluster, with ``model.s3EndpointUrl`` and
``model.credentialsSecret`` already set on the release); skipped without it, or without helm.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections import Counter
from typing import Any

import pytest

pytestmark = pytest.mark.e2e
WEIGHT = 30


def model_version(base_url: str) -> str:
    req = urllib.request.Request(
        f"{base_url}/predict", data=json.dumps({"review": "works as described"}).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["model"]["version"]


def test_canary_split_through_the_gateway_then_rollback(cluster: Any) -> None:
    uri = os.environ.get("REVIEWSERVE_E2E_CANARY_MODEL_URI")
    if not uri or not cluster.helm:
        pytest.skip("set REVIEWSERVE_E2E_CANARY_MODEL_URI (a second model version the cluster can fetch) and have helm")
    helm = [cluster.helm, "--namespace", cluster.namespace] + (
        ["--kube-context", cluster.context] if cluster.context else []
    )
    chart = os.path.join(os.path.dirname(__file__), "..", "..", "charts", "reviewserve")
    stable = Counter(model_version(cluster.gateway_url) for _ in range(5))
    assert len(stable) == 1, stable
    upgrade = [*helm, "upgrade", cluster.release, chart, "--reuse-values", "--wait", "--timeout", "5m"]
    upgrade += ["--set", f"canary.enabled=true,canary.weight={WEIGHT},canary.model.uri={uri}"]
    subprocess.run(upgrade, check=True, capture_output=True, timeout=400)
    try:
        time.sleep(5)  # the Gateway picks up the new route weights
        counts = Counter(model_version(cluster.gateway_url) for _ in range(400))
        assert len(counts) == 2, f"both versions should answer: {counts}"
        canary = sum(n for version, n in counts.items() if version not in stable)
        assert abs(canary / 400 - WEIGHT / 100) <= 0.08, f"canary share {canary / 400:.2f}, weight {WEIGHT}%: {counts}"
    finally:
        subprocess.run([*helm, "rollback", cluster.release, "--wait", "--timeout", "5m"], check=True, timeout=400)
    time.sleep(5)
    assert Counter(model_version(cluster.gateway_url) for _ in range(50)).keys() == stable.keys()

"""End-to-end checks of a deployed release (kind): readiness, HPA, the HTTPRoute attached to the
cluster's Gateway, port-forward, helm test, and a rollout restart under a request loop that must lose
no request.

All traffic goes to this machine only: through the Gateway (NGINX Gateway Fabric, `make kind-up`) by
kind's host port mapping on localhost, and a ``kubectl port-forward`` on 127.0.0.1. Request loops are
bounded in count and time.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from release import release_selector, route_parent_problems

pytestmark = pytest.mark.e2e

REVIEW = {"review": "This Chatbot is amazing"}


def post_predict(base_url: str, timeout: float = 10.0) -> dict[str, Any]:
    """POST the seed review to ``base_url``/predict and return the JSON answer (raises on non-200)."""
    req = urllib.request.Request(
        f"{base_url}/predict",
        data=json.dumps(REVIEW).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        assert resp.status == 200
        return json.load(resp)


def eventually(check: Any, timeout: float, interval: float = 2.0) -> Any:
    """Call ``check`` until it returns a truthy value or ``timeout`` passes (then re-raise/fail)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # retried until the deadline
            last = exc
        time.sleep(interval)
    if last is not None:
        raise last
    pytest.fail(f"condition not met within {timeout}s")


def _ready_pods(cluster: Any) -> list[Any]:
    """Running, Ready, non-terminating app pods of the release."""
    pods = cluster.core.list_namespaced_pod(cluster.namespace, label_selector=cluster.pod_selector).items
    return [
        p
        for p in pods
        if p.metadata.deletion_timestamp is None
        and p.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


def _rollout_done(cluster: Any) -> bool:
    """Whether the Deployment's latest generation is fully rolled out and available."""
    dep = cluster.apps.read_namespaced_deployment(cluster.fullname, cluster.namespace)
    st, want = dep.status, dep.spec.replicas
    return bool(
        (st.observed_generation or 0) >= dep.metadata.generation
        and st.updated_replicas == want
        and st.ready_replicas == want
        and st.available_replicas == want
        and not st.unavailable_replicas
        and (st.replicas or 0) == want
    )


def test_pods_ready_equal_replicas(cluster: Any) -> None:
    """Every desired replica is a Ready pod."""

    def check() -> bool:
        dep = cluster.apps.read_namespaced_deployment(cluster.fullname, cluster.namespace)
        want = dep.spec.replicas
        return bool(want and want >= 1 and dep.status.ready_replicas == want and len(_ready_pods(cluster)) == want)

    eventually(check, timeout=180)


def test_hpa_present_with_cpu_target(cluster: Any) -> None:
    """The HPA targets the Deployment on CPU utilization and keeps replicas within its bounds."""
    hpa = cluster.autoscaling.read_namespaced_horizontal_pod_autoscaler(cluster.fullname, cluster.namespace)
    assert hpa.spec.scale_target_ref.kind == "Deployment"
    assert hpa.spec.scale_target_ref.name == cluster.fullname
    cpu = [m for m in hpa.spec.metrics if m.type == "Resource" and m.resource.name == "cpu"]
    assert cpu and cpu[0].resource.target.type == "Utilization" and cpu[0].resource.target.average_utilization
    dep = cluster.apps.read_namespaced_deployment(cluster.fullname, cluster.namespace)
    assert hpa.spec.min_replicas <= dep.spec.replicas <= hpa.spec.max_replicas


def test_httproute_attached_to_gateway(cluster: Any) -> None:
    """The release's HTTPRoute is Accepted by its Gateway and its backend (the Service) resolved."""
    from kubernetes.client.exceptions import ApiException

    try:
        routes = cluster.custom.list_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", cluster.namespace, "httproutes",
            label_selector=release_selector(cluster.release),
        )["items"]  # fmt: skip
    except ApiException as exc:
        if exc.status != 404:
            raise
        pytest.skip("the cluster has no Gateway API CRDs (an Ingress serves the release)")
    if not routes:
        pytest.skip("the release has no HTTPRoute (httpRoute.enabled is off)")
    names = [r["metadata"]["name"] for r in routes]

    def attached() -> bool:
        problems = []
        for name in names:
            route = cluster.custom.get_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", cluster.namespace, "httproutes", name
            )
            problems += [f"{name}: {p}" for p in route_parent_problems(route)]
        assert not problems, problems
        return True

    eventually(attached, timeout=60)


def test_predict_through_gateway(cluster: Any) -> None:
    """POST /predict through the Gateway (the kind cluster's NGINX Gateway Fabric) answers with a prediction."""
    answer = eventually(lambda: post_predict(cluster.gateway_url), timeout=60)
    assert answer["prediction"] in ("positive", "negative")
    assert 0.0 <= answer["probability"] <= 1.0


@pytest.fixture()
def port_forward(cluster: Any) -> Iterator[str]:
    """``kubectl port-forward svc/<service> :<http port>`` on 127.0.0.1; yields the base URL."""
    if cluster.kubectl is None:
        pytest.skip("kubectl not on PATH")
    target = f":{cluster.service_port}"
    cmd = [cluster.kubectl, "port-forward", f"svc/{cluster.service}", target, "--address", "127.0.0.1"]
    cmd += ["--namespace", cluster.namespace] + (["--context", cluster.context] if cluster.context else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        port = None
        deadline = time.monotonic() + 20
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            match = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", line)
            port = int(match.group(1)) if match else None
        assert port, "kubectl port-forward did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_predict_through_port_forward(port_forward: str) -> None:
    """POST /predict through a port-forward to the Service answers with a prediction."""
    answer = eventually(lambda: post_predict(port_forward), timeout=30, interval=1)
    assert answer["prediction"] in ("positive", "negative")


def test_helm_test_passes(cluster: Any) -> None:
    """``helm test --logs`` runs the chart's test pod, shows its log, and keeps the pod afterwards.

    The pod asserts a real prediction (label positive/negative, probability in [0, 1]); Helm 3 can
    only print its log because the pod is not deleted on success (helm/helm#9098).
    """
    if cluster.helm is None:
        pytest.skip("helm not found (make tools)")
    cmd = [
        cluster.helm,
        "test",
        cluster.release,
        "--namespace",
        cluster.namespace,
        "--logs",
        "--timeout",
        "3m",
    ]
    cmd += ["--kube-context", cluster.context] if cluster.context else []
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Succeeded" in res.stdout
    match = re.search(r"OK attempt \d+: prediction=(\w+) probability=([0-9.eE+-]+)", res.stdout)
    assert match, res.stdout
    assert match.group(1) in ("positive", "negative") and 0.0 <= float(match.group(2)) <= 1.0
    pods = cluster.core.list_namespaced_pod(
        cluster.namespace,
        label_selector=f"app.kubernetes.io/instance={cluster.release},app.kubernetes.io/component=helm-test",
    ).items
    assert [p.status.phase for p in pods] == ["Succeeded"], "the test pod must be kept until the next run"


def test_rollout_restart_loses_no_request(cluster: Any) -> None:
    """A rollout restart under a steady request loop through the Gateway loses zero requests."""
    eventually(lambda: post_predict(cluster.gateway_url), timeout=60)
    eventually(lambda: _rollout_done(cluster), timeout=120)
    stop = threading.Event()
    results: list[str] = []
    max_requests, max_seconds = 20_000, 300

    def loop() -> None:
        started = time.monotonic()
        while not stop.is_set() and len(results) < max_requests and time.monotonic() - started < max_seconds:
            try:
                answer = post_predict(cluster.gateway_url, timeout=15)
                results.append("ok" if "prediction" in answer else f"bad body {answer}")
            except (urllib.error.URLError, OSError, AssertionError, ValueError) as exc:
                results.append(f"error {exc!r}")
            time.sleep(0.02)

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(3)]
    for w in workers:
        w.start()
    time.sleep(3)
    body = {
        "spec": {
            "template": {
                "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": datetime.now(UTC).isoformat()}}
            }
        }
    }
    cluster.apps.patch_namespaced_deployment(cluster.fullname, cluster.namespace, body)
    try:
        time.sleep(5)
        eventually(lambda: _rollout_done(cluster), timeout=max_seconds - 30, interval=2)
        time.sleep(5)  # keep loading the new pods for a moment
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=30)
    failures = [r for r in results if r != "ok"]
    assert len(results) >= 50, f"too few requests sent ({len(results)})"
    assert failures == [], f"{len(failures)} of {len(results)} requests failed: {failures[:5]}"

"""Models from object storage in the image, as the chart runs it: canary, promotion (rollout) and rollback.

moto's S3 server plays the store (listening on the Docker bridge, as a store outside the pods would be);
versions 1 and 2 are pushed with ``reviewserve model push``. Pods are the rendered Deployments run under
Docker (dockerpod.py), the store reached through the chart's values (model.uri, model.s3EndpointUrl, a
credentials Secret). A real nginx plays the Gateway, configured from the rendered HTTPRoute's weighted
backendRefs (gatewayroute.py). One request loop runs through all phases, as helm would drive them:
1. canary: stable on version 1, canary.weight=30 on version 2 (a second Deployment and Service);
2. promotion: `helm upgrade --set model.uri=.../2,canary.enabled=false`: a new stable pod (readiness holds
   it out until its model is fetched and verified) joins, then the canary and the old stable pod are
   stopped as the kubelet stops pods;
3. rollback: `helm rollback` to revision 1: the canary and a version-1 stable pod come back, the version-2
   stable pod goes.
Every answer says which model version gave it: the counts per version and phase are printed.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from docker_settings import DOCKER, SEED, render_chart
from dockerpod import Manifest, Replica, RequestLoop, find_one, http_request, is_prediction, translate
from gatewayroute import GatewayNginx, backend_weights, mirror_backends, route_rules

from tests.conftest import MODEL_DIR, free_port
from tests.modelversions import make_version

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]
PREDICT = "/predict"
STABLE, CANARY = "t-reviewserve", "t-reviewserve-canary"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "docker-test-key",
    "AWS_SECRET_ACCESS_KEY": "docker-test-secret-never-logged",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def bridge_gateway() -> str:
    """The host's address on Docker's default bridge (what containers reach the host by)."""
    out = subprocess.run(
        [DOCKER, "network", "inspect", "bridge", "--format", "{{json .IPAM.Config}}"],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    config = json.loads(out.stdout)[0]
    # The engine does not always report the gateway; it is then the subnet's first address.
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


@pytest.fixture(scope="module")
def store(docker_engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """moto S3 on the bridge with versions 1 and 2 pushed; yields (endpoint for pods, bucket URI)."""
    import boto3
    from moto.server import ThreadedMotoServer

    from reviewserve.model.store import push

    port = free_port()
    server = ThreadedMotoServer(ip_address="0.0.0.0", port=port)
    server.start()
    try:
        local = f"http://127.0.0.1:{port}"
        bucket = f"models-{uuid.uuid4().hex[:10]}"
        with mock.patch.dict(os.environ, {**CREDENTIALS, "AWS_ENDPOINT_URL": local}):
            boto3.client("s3", endpoint_url=local).create_bucket(Bucket=bucket)
            push(MODEL_DIR, f"s3://{bucket}")
            push(make_version(tmp_path_factory.mktemp("v2") / "m", "2"), f"s3://{bucket}")
        yield f"http://{bridge_gateway()}:{port}", f"s3://{bucket}"
    finally:
        server.stop()


def start_pod(deployment: Manifest, docs: list[Manifest], name: str, pods: list[Replica]) -> Replica:
    """Run one pod of ``deployment`` and wait for its probes as the kubelet does (startup, then readiness)."""
    replica = Replica(translate(deployment, docs, pod_name=name), name=f"{name}-{uuid.uuid4().hex[:6]}")
    pods.append(replica)
    replica.start()
    try:
        replica.wait_until_ready()
    except AssertionError as exc:
        readyz = http_request(replica.host_port("http"), "GET", "/readyz")
        raise AssertionError(f"{name} not ready: {readyz.body[:1000]!r}\n{replica.logs()[:3000]}") from exc
    return replica


def test_canary_promotion_and_rollback_through_the_route(
    image: str, helm: Path, nginx: str, tmp_path: Path, store: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, bucket = store
    v1, v2 = f"{bucket}/review-sentiment/1", f"{bucket}/review-sentiment/2"
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "model-store"}, "stringData": CREDENTIALS}
    common = {"model.s3EndpointUrl": endpoint, "model.credentialsSecret": "model-store", "httpRoute.enabled": "true"}
    canary_values = {**common, "model.uri": v1, "canary.enabled": "true", "canary.weight": "30", "canary.model.uri": v2}

    def render(values: dict[str, str]) -> list[Manifest]:
        return [*render_chart(helm, **values), secret]  # the Secret a cluster would already hold

    revision1 = render(canary_values)
    promoted = render({**common, "model.uri": v2})
    stable_dep, canary_dep = find_one(revision1, "Deployment", STABLE), find_one(revision1, "Deployment", CANARY)
    port = translate(stable_dep, revision1, pod_name="probe").container_ports["http"]
    services = {s["metadata"]["name"]: s for s in revision1 if s["kind"] == "Service"}
    route1 = find_one(revision1, "HTTPRoute")
    weights1 = backend_weights(route1, services, {"http": port, str(port): port})
    assert weights1 == {STABLE: 70, CANARY: 30}
    weights2 = backend_weights(find_one(promoted, "HTTPRoute"), services, {"http": port, str(port): port})
    assert weights2 == {STABLE: 1}

    pods: list[Replica] = []
    proxy = GatewayNginx(tmp_path, route_rules(route1, port))
    phases: list[tuple[str, float]] = []
    try:
        stable1 = start_pod(stable_dep, revision1, "stable-v1", pods)
        canary1 = start_pod(canary_dep, revision1, "canary-v2", pods)
        for pod, uri in ((stable1, v1), (canary1, v2)):
            logs = pod.logs()
            fetched = [json.loads(line) for line in logs.splitlines() if '"model fetched"' in line]
            assert fetched and fetched[0]["uri"] == uri, logs[-3000:]
            assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in logs
        proxy.start_with({STABLE: (70, [stable1.host_port(port)]), CANARY: (30, [canary1.host_port(port)])})
        headers = {"Host": proxy.host_header}
        loop = RequestLoop(
            proxy.port, PREDICT, SEED, headers=headers, interval=0.02, max_requests=20000, max_seconds=900
        )
        phases.append(("canary 30% (v1 stable, v2 canary)", time.monotonic()))
        loop.start()
        time.sleep(8)

        # Promotion: helm upgrade --set model.uri=.../2,canary.enabled=false.
        phases.append(("promotion rolling", time.monotonic()))
        stable_dep2 = find_one(promoted, "Deployment", STABLE)
        stable2 = start_pod(stable_dep2, promoted, "stable-v2", pods)  # maxSurge 1: ready before the old one goes
        proxy.set_backends({STABLE: (1, [stable1.host_port(port), stable2.host_port(port)])})  # route: no canary
        canary_stop = canary1.stop_like_kubelet()
        proxy.set_backends({STABLE: (1, [stable2.host_port(port)])})  # endpoints: the old pod is terminating
        stable_stop = stable1.stop_like_kubelet()
        phases.append(("promoted (v2 stable only)", time.monotonic()))
        time.sleep(6)

        # Rollback: helm rollback to revision 1 (stable back on v1, the canary back at 30%).
        phases.append(("rollback rolling", time.monotonic()))
        canary2 = start_pod(canary_dep, revision1, "canary-v2-again", pods)
        stable3 = start_pod(stable_dep, revision1, "stable-v1-again", pods)
        proxy.set_backends(
            {STABLE: (70, [stable2.host_port(port), stable3.host_port(port)]), CANARY: (30, [canary2.host_port(port)])}
        )
        proxy.set_backends({STABLE: (70, [stable3.host_port(port)]), CANARY: (30, [canary2.host_port(port)])})
        rollback_stop = stable2.stop_like_kubelet()
        phases.append(("rolled back (v1 stable, v2 canary)", time.monotonic()))
        time.sleep(12)
        sent = loop.stop()
    finally:
        proxy.stop()
        for pod in pods:
            pod.remove()

    failed = [(s.index, s.response.status, s.response.error) for s in sent if not is_prediction(s.response)]
    # A request nginx passed on to a second replica (a refused connection) looks like a success to the client;
    # a Gateway that does not retry would have failed it, so the note reports how many there were.
    posts = [ln for ln in proxy.access_log.read_text().splitlines() if " POST " in ln]
    passed_on = [ln for ln in posts if "," in ln.split("ustatus=", 1)[1]]
    counts: dict[str, Counter[str]] = {}
    for s in sent:
        name = [label for label, at in phases if at <= s.sent][-1]
        version = s.response.json()["model"]["version"] if is_prediction(s.response) else "failed"
        counts.setdefault(name, Counter())[version] += 1
    with capsys.disabled():
        print(f"\n{len(sent)} requests through nginx, {len(failed)} failed, {len(passed_on)} of {len(posts)} passed "
              "on by nginx to a second replica; by phase and model version:")  # fmt: skip
        for label, _ in phases:
            print(f"  {label}: {dict(sorted(counts.get(label, Counter()).items()))}")
    assert not failed, f"failed requests: {failed[:10]}\n{proxy.error_log.read_text()[-3000:]}"
    for result in (canary_stop, stable_stop, rollback_stop):
        assert result.exited_in_time and result.exit_code == 0, result
    split, promoted_counts, back = (counts[label] for label in (phases[0][0], phases[2][0], phases[4][0]))
    for phase in (split, back):
        total = phase["1"] + phase["2"]
        assert total >= 100, phase
        assert 0.2 <= phase["2"] / total <= 0.4, f"the canary's share should be about 30%: {phase}"
    assert set(promoted_counts) == {"2"} and promoted_counts["2"] >= 50, promoted_counts


def test_shadow_track_gets_a_copy_of_every_request_and_answers_nobody(
    image: str, helm: Path, nginx: str, tmp_path: Path, store: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """shadow.enabled: clients get version 1 only; the shadow (version 2) scores a mirrored copy of each request,
    and both tracks' metrics carry their `track` label."""
    from tests.promtext import sample

    endpoint, bucket = store
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "model-store"}, "stringData": CREDENTIALS}
    values = {"model.s3EndpointUrl": endpoint, "model.credentialsSecret": "model-store", "httpRoute.enabled": "true"}
    values |= {"model.uri": f"{bucket}/review-sentiment/1", "shadow.enabled": "true"}
    values |= {"canary.model.uri": f"{bucket}/review-sentiment/2"}
    docs = [*render_chart(helm, **values), secret]
    route = find_one(docs, "HTTPRoute")
    stable_dep, shadow_dep = find_one(docs, "Deployment", STABLE), find_one(docs, "Deployment", CANARY)
    port = translate(stable_dep, docs, pod_name="probe").container_ports["http"]
    services = {s["metadata"]["name"]: s for s in docs if s["kind"] == "Service"}
    assert backend_weights(route, services, {"http": port, str(port): port}) == {STABLE: 1}
    assert mirror_backends(route) == {CANARY}
    pods: list[Replica] = []
    try:
        stable = start_pod(stable_dep, docs, "stable-v1", pods)
        shadow = start_pod(shadow_dep, docs, "shadow-v2", pods)
        proxy = GatewayNginx(tmp_path, route_rules(route, port), mirror_ports=[shadow.host_port(port)])
        proxy.start_with({STABLE: (1, [stable.host_port(port)])})
        try:
            loop = RequestLoop(proxy.port, PREDICT, SEED, headers={"Host": proxy.host_header}, interval=0.02,
                               max_requests=150, max_seconds=120)  # fmt: skip
            loop.start()
            loop.join(130)
            sent = loop.stop()
        finally:
            proxy.stop()

        def scored(pod: Replica, track: str) -> float:
            text = http_request(pod.host_port(port), "GET", "/metrics").body.decode()
            return sample(text, "reviewserve_predictions_total", track=track) or 0.0

        deadline = time.monotonic() + 30
        while scored(shadow, "canary") < len(sent) and time.monotonic() < deadline:
            time.sleep(0.5)
        counts = (scored(stable, "stable"), scored(shadow, "canary"))
        shadow_info = http_request(shadow.host_port(port), "GET", "/metrics").body.decode()
    finally:
        for pod in pods:
            pod.remove()
    versions = Counter(s.response.json()["model"]["version"] if is_prediction(s.response) else "failed" for s in sent)
    with capsys.disabled():
        print(f"\nshadow: {len(sent)} requests, answers by version {dict(versions)}; scored stable/shadow {counts}")
    assert versions == Counter({"1": len(sent)}) and len(sent) >= 100
    assert counts == (len(sent), len(sent)), "every request scored once by each track"
    assert sample(shadow_info, "reviewserve_model_info", track="canary", version="2") == 1

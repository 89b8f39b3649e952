"""The chart on real clusters, round 2 (issue 16): what static checks alone did not see.

One test (or a few) per item of the issue; the item number is in each docstring. Where only a live
cluster shows the behaviour (``lookup`` of live objects, NetworkPolicy enforcement) the e2e tests in
tests/e2e cover it and these are the closest checks that run here: the real templates rendered by
helm, with a ``lookup`` result substituted where one is needed, validated by kubernetes-validate and
the CRD schemas; promtool unit tests for the rules; the kind scripts run with recorders on PATH.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import requests
import yaml

from tests.systools import missing_tool

REPO = Path(__file__).resolve().parents[2]
KIND_VALUES = str(REPO / "k8s" / "values-kind.yaml")
# Paths of the app: the API (published) and what stays on the Service.
API_PATHS = ("/predict", "/v2/models/review-sentiment/infer", "/v2/health/ready", "/v2/models/review-sentiment")
PRIVATE_PATHS = ("/metrics", "/openapi.json", "/healthz", "/readyz", "/", "/predictx", "/v2x")


def _validate(doc: dict[str, Any]) -> None:
    """kubernetes-validate (strict) on the oldest and newest Kubernetes the chart supports."""
    for version in ("1.29.0", "1.35.0"):
        kubernetes_validate.validate(doc, version, strict=True)


def _chart_with_lookup(kit: Any, tmp_path: Path, template: str, call: str, result: str) -> Path:
    """A copy of the chart whose ``call`` (a ``lookup`` in ``template``) returns ``result``: what Helm's
    ``lookup`` answers on a live cluster, which ``helm template`` cannot ask."""
    chart = tmp_path / "reviewserve"
    shutil.copytree(kit.chart, chart)
    path = chart / "templates" / template
    text = path.read_text()
    assert text.count(call) == 1, f"{call!r} not found once in {template}"
    path.write_text(text.replace(call, result))
    return chart


def _render_chart(kit: Any, chart: Path, *sets: str) -> list[dict[str, Any]]:
    args = ["template", kit.release, str(chart), "--namespace", kit.namespace]
    for s in sets:
        args += ["--set", s]
    res = kit.helm("helm3", *args)
    assert res.returncode == 0, res.stderr
    return [d for d in yaml.safe_load_all(res.stdout) if d]


# ------------------------------------------------------------- 1 NetworkPolicy ---


def _admitted_namespaces(policy: dict[str, Any]) -> set[str]:
    peers = [p for rule in policy["spec"]["ingress"] for p in rule.get("from", [])]
    labels = [p["namespaceSelector"]["matchLabels"] for p in peers if "namespaceSelector" in p]
    return {m["kubernetes.io/metadata.name"] for m in labels if "kubernetes.io/metadata.name" in m}


def test_kind_network_policy_admits_the_gateway_data_plane(kit: Any) -> None:
    """Item 1: the kind values turn the policy on, and it admits the namespace of the Gateway the route
    attaches to (NGINX Gateway Fabric's data plane runs there), not ingress-nginx's; DNS egress is open."""
    docs = kit.render((KIND_VALUES,))
    kind = yaml.safe_load(Path(KIND_VALUES).read_text())
    assert kind["networkPolicy"]["enabled"] is True, "the kind e2e must run with the policy on (kind enforces it)"
    policy = kit.one(docs, "NetworkPolicy")
    gateway_ns = {ref["namespace"] for ref in kit.one(docs, "HTTPRoute")["spec"]["parentRefs"]}
    assert gateway_ns == {"nginx-gateway"}
    admitted = _admitted_namespaces(policy)
    assert gateway_ns <= admitted and "ingress-nginx" not in admitted, admitted
    # The helm test pod keeps its own rule: a green `helm test` says nothing about the Gateway path.
    dns = [r for r in policy["spec"]["egress"] if {p["port"] for p in r.get("ports", [])} == {53}]
    assert dns and not dns[0].get("to"), "DNS to any resolver (CoreDNS or a node-local cache)"
    _validate(policy)


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (("httpRoute.enabled=true",), {"reviewserve", "monitoring"}),  # the release's namespace
        (("httpRoute.enabled=true", "httpRoute.parentRefs[0].name=gw", "httpRoute.parentRefs[0].namespace=edge"),
         {"edge", "monitoring"}),
        (("ingress.enabled=true",), {"ingress-nginx", "monitoring"}),
        (("httpRoute.enabled=true", "networkPolicy.gatewayNamespaceSelector.team=edge"), {"monitoring"}),
    ],
)  # fmt: skip
def test_network_policy_follows_the_enabled_entry_points(kit: Any, sets: tuple[str, ...], expected: set[str]) -> None:
    """Item 1: parentRef namespaces (default the release's) when the route is on, the ingress controller
    only when the Ingress is on; an explicit gateway selector replaces the derived namespaces."""
    docs = kit.render(sets=("networkPolicy.enabled=true", *sets))
    policy = kit.one(docs, "NetworkPolicy")
    assert _admitted_namespaces(policy) == expected
    if "networkPolicy.gatewayNamespaceSelector.team=edge" in sets:
        peers = policy["spec"]["ingress"][0]["from"]
        assert {"namespaceSelector": {"matchLabels": {"team": "edge"}}} in peers
    _validate(policy)


def test_network_policy_egress_dns_and_extra_rules(kit: Any) -> None:
    """Item 1: the pods may resolve names by default, and `networkPolicy.egress` adds e.g. a model store."""
    store = '{"to":[{"ipBlock":{"cidr":"10.0.0.0/8"}}],"ports":[{"port":443,"protocol":"TCP"}]}'
    res = kit.helm(
        "helm3", "template", kit.release, str(kit.chart), "--set", "networkPolicy.enabled=true",
        "--set-json", f"networkPolicy.egress=[{store}]",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    policy = next(d for d in yaml.safe_load_all(res.stdout) if d and d["metadata"]["name"] == kit.fullname
                  and d["kind"] == "NetworkPolicy")  # fmt: skip
    assert len(policy["spec"]["egress"]) == 2 and policy["spec"]["egress"][1] == json.loads(store)
    closed = kit.one(kit.render(sets=("networkPolicy.enabled=true", "networkPolicy.allowDNS=false")), "NetworkPolicy")
    assert closed["spec"]["egress"] == []


def _egress_ports(policy: dict[str, Any]) -> set[int]:
    """TCP ports the policy lets the pods reach, DNS left out."""
    return {p["port"] for r in policy["spec"]["egress"] for p in r.get("ports", []) if p["port"] != 53}


STORE = "httpRoute.enabled=true"  # canary/shadow need the route


@pytest.mark.parametrize(
    ("sets", "ports"),
    [
        (("model.uri=s3://models/review-sentiment/2",), {443}),  # AWS S3
        (("model.uri=s3://models/rs/2", "model.s3EndpointUrl=http://minio.storage:9000"), {9000}),
        (("model.uri=s3://models/rs/2", "model.s3EndpointUrl=http://minio.storage"), {80}),
        (("model.uri=https://models.example/rs/2",), {443}),
        (("model.uri=http://models.example:8080/rs/2",), {8080}),
        (("model.uri=http://[fd00::5]:8081/rs/2",), {8081}),
        ((STORE, "canary.enabled=true", "canary.model.uri=http://models.example:8081/rs/3"), {8081}),
        ((STORE, "model.uri=s3://m/rs/2", "shadow.enabled=true", "canary.model.uri=https://m.example/rs/3"), {443}),
        (("model.uri=/opt/models/rs",), set()),  # a folder in the image: no store
        ((), set()),  # the image's model
        (("model.uri=s3://m/rs/2", "networkPolicy.allowModelStore=false"), set()),  # the user's own rules
    ],
)  # fmt: skip
def test_network_policy_lets_the_pods_fetch_their_model(kit: Any, sets: tuple[str, ...], ports: set[int]) -> None:
    """Item 1: with model.uri (or the canary's) on a store, the policy lets the pods reach the store's port
    (from the URI, or model.s3EndpointUrl for s3://): with DNS only, the model would be unreachable and
    the pods unready for ever. A model folder in the image opens nothing."""
    policy = kit.one(kit.render(sets=("networkPolicy.enabled=true", *sets)), "NetworkPolicy")
    assert _egress_ports(policy) == ports, policy["spec"]["egress"]
    store_rules = [r for r in policy["spec"]["egress"] if _egress_ports({"spec": {"egress": [r]}})]
    assert all(not r.get("to") and {p["protocol"] for p in r["ports"]} == {"TCP"} for r in store_rules)
    _validate(policy)


# ------------------------------------------------------------------- 2 KEDA ---

KEDA_SETS = (
    "stream.enabled=true",
    "stream.redis.existingSecret=reviewserve-redis",
    "stream.keda.enabled=true",
    "stream.keda.address=redis.example:6379",
)


def test_keda_reads_the_redis_password_from_a_trigger_authentication(kit: Any) -> None:
    """Item 2: with stream.keda.auth the chart renders a TriggerAuthentication taking the password (and
    user, CA) from the Redis Secret, the ScaledObject references it, TLS is on for rediss://; both pass
    KEDA's CRD schemas."""
    docs = kit.render(
        sets=(*KEDA_SETS, "stream.keda.auth.enabled=true", "stream.keda.auth.usernameKey=redis-user",
              "stream.keda.auth.tls=true", "stream.keda.auth.caKey=ca.crt"),
    )  # fmt: skip
    [auth] = kit.by_kind(docs, "TriggerAuthentication")
    [scaled] = kit.by_kind(docs, "ScaledObject")
    assert auth["apiVersion"] == "keda.sh/v1alpha1"
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {
        "password": ("reviewserve-redis", "redis-password"),
        "username": ("reviewserve-redis", "redis-user"),
        "ca": ("reviewserve-redis", "ca.crt"),
    }
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
    assert trigger["metadata"]["enableTLS"] == "true"
    code, results = kit.validate_crds([auth, scaled])
    assert code == 0 and all(r["ok"] for r in results), results


def test_keda_without_auth_and_with_an_existing_one(kit: Any) -> None:
    """Item 2: no TriggerAuthentication unless asked; an existing one is referenced, not rendered; the
    dev Redis (no password) cannot be combined with it."""
    plain = kit.render(sets=KEDA_SETS)
    assert not kit.by_kind(plain, "TriggerAuthentication")
    assert "authenticationRef" not in kit.by_kind(plain, "ScaledObject")[0]["spec"]["triggers"][0]
    theirs = kit.render(sets=(*KEDA_SETS, "stream.keda.auth.enabled=true", "stream.keda.authenticationRef=shared"))
    assert not kit.by_kind(theirs, "TriggerAuthentication")
    assert kit.by_kind(theirs, "ScaledObject")[0]["spec"]["triggers"][0]["authenticationRef"] == {"name": "shared"}
    res = kit.template(sets=("stream.enabled=true", "stream.devRedis.enabled=true", "stream.keda.enabled=true",
                             "stream.keda.auth.enabled=true"))  # fmt: skip
    assert res.returncode != 0 and "stream.keda.auth.enabled reads the Redis password" in res.stderr


def test_crd_validator_knows_trigger_authentication(kit: Any) -> None:
    """Item 2: the validator is live for TriggerAuthentication: a wrong field fails it."""
    bad = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {"name": "x"},
        "spec": {"secretTargetRef": [{"parameter": "password", "name": "s"}]},  # key missing
    }
    code, results = kit.validate_crds([bad])
    assert code == 1 and not results[0]["ok"], results


# ------------------------------------------------------------- 4 one-off Job ---

BATCH_SETS = ("batch.databaseSecret.name=db", "batch.job.enabled=true")
JOB_LOOKUP = '(lookup "batch/v1" "Job" .Release.Namespace $name)'
RUNS_LOOKUP = '(lookup "v1" "ConfigMap" .Release.Namespace $runsName)'


def test_one_off_job_is_named_by_its_run_id(kit: Any) -> None:
    """Item 4: the Job's name comes from batch.job.runId, never from the release revision; Helm keeps it
    (resource-policy keep) when a later revision no longer renders it; a run needs a run id."""
    template = (kit.chart / "templates" / "batch-job.yaml").read_text()
    assert ".Release.Revision" not in template
    docs = kit.render(sets=(*BATCH_SETS, "batch.job.runId=backfill-2026-12-06"))
    [job] = kit.by_kind(docs, "Job")
    assert job["metadata"]["name"] == f"{kit.fullname}-score-backfill-2026-12-06"
    assert job["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert job["metadata"]["labels"]["reviewserve.io/run-id"] == "backfill-2026-12-06"
    _validate(job)
    res = kit.template(sets=BATCH_SETS)
    assert res.returncode != 0 and "batch.job.runId" in res.stderr
    bad = kit.template(sets=(*BATCH_SETS, "batch.job.runId=Not_A_Name"))
    assert bad.returncode != 0 and "runId" in bad.stderr


def test_an_upgrade_never_restarts_or_deletes_a_run(kit: Any, tmp_path: Path) -> None:
    """Item 4: when the run id's Job exists, or the release's record of run ids has it (lookup on the live
    cluster), an upgrade - an image bump with --reuse-values - renders no Job: nothing is created, and
    `keep` stops Helm deleting the running one."""
    live = _chart_with_lookup(kit, tmp_path / "live", "batch-job.yaml", JOB_LOOKUP, '(dict "kind" "Job")')
    docs = _render_chart(kit, live, *BATCH_SETS, "batch.job.runId=backfill-1", "image.tag=2.0.0")
    assert not [d for d in docs if d["kind"] == "Job"]
    # The finished Job was removed (ttlSecondsAfterFinished): the record of run ids still says it ran.
    record = _chart_with_lookup(kit, tmp_path / "record", "batch-job.yaml", RUNS_LOOKUP,
                                '(dict "data" (dict "runs" "backfill-0,backfill-1"))')  # fmt: skip
    docs = _render_chart(kit, record, *BATCH_SETS, "batch.job.runId=backfill-1", "image.tag=2.0.0")
    assert not [d for d in docs if d["kind"] == "Job"]
    [runs] = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-score-runs")]
    assert runs["data"]["runs"] == "backfill-0,backfill-1"
    # Batch turned off later: the record stays in the release.
    docs = _render_chart(kit, record, "batch.job.enabled=false")
    assert [d["data"]["runs"] for d in docs if d["kind"] == "ConfigMap" and "runs" in d.get("data", {})] == [
        "backfill-0,backfill-1"
    ]
    # A new run id (no such Job yet) is a new run.
    new = _chart_with_lookup(kit, tmp_path / "new", "batch-job.yaml", JOB_LOOKUP, "(dict)")
    docs = _render_chart(kit, new, *BATCH_SETS, "batch.job.runId=backfill-2", "image.tag=2.0.0")
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Job"] == [f"{kit.fullname}-score-backfill-2"]
    assert [d["data"]["runs"] for d in docs if d["metadata"]["name"].endswith("-score-runs")] == ["backfill-2"]


# ---------------------------------------------------------------- 5 skaffold ---


def test_skaffold_leaves_push_to_its_cluster_detection() -> None:
    """Item 5: no `push` in build.local (nor in a profile): skaffold pushes for remote clusters and loads
    into local ones (kind); the docs say how to give it a registry (--default-repo)."""
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    assert "push" not in config["build"]["local"]
    for profile in config.get("profiles", []):
        for patch in profile.get("patches", []):
            assert not patch["path"].endswith("/push"), patch
    doc = (REPO / "docs" / "kubernetes.md").read_text()
    assert "skaffold dev --default-repo" in doc


# --------------------------------------------------------- 6 autoscaling on ---

DEPLOY_LOOKUP = '(lookup "apps/v1" "Deployment" .Release.Namespace (include "reviewserve.fullname" .))'


@pytest.mark.parametrize(
    ("live", "sets", "expected"),
    [
        (4, ("autoscaling.enabled=true",), 4),  # HPA scaled it to 4: an upgrade keeps 4
        (2, ("autoscaling.enabled=true",), 2),  # turning autoscaling on for a 2-pod release: stays 2
        (1, ("autoscaling.enabled=true",), 2),  # below minReplicas: the HPA's floor at once
        (9, ("autoscaling.enabled=true",), 6),  # above maxReplicas: its ceiling
        (None, ("autoscaling.enabled=true",), None),  # first install (or no cluster access): the HPA sets it
        (5, (), 2),  # no autoscaling: replicaCount
    ],
)
def test_turning_autoscaling_on_keeps_the_live_replicas(
    kit: Any, tmp_path: Path, live: int | None, sets: tuple[str, ...], expected: int | None
) -> None:
    """Item 6: with autoscaling the Deployment carries the live replica count (lookup) on an upgrade, so
    Helm's patch never removes `replicas` and the API never defaults it to 1 before the HPA acts."""
    result = "(dict)" if live is None else f'(dict "spec" (dict "replicas" {live}))'
    chart = _chart_with_lookup(kit, tmp_path, "deployment.yaml", DEPLOY_LOOKUP, result)
    deployment = next(d for d in _render_chart(kit, chart, *sets) if d["kind"] == "Deployment")
    assert deployment["spec"].get("replicas") == expected
    _validate(deployment)


# ----------------------------------------------------------- 7, 8 entry points ---


def _gateway_routes(path: str, rules: list[dict[str, Any]]) -> bool:
    """Whether an HTTPRoute's rules match ``path`` (Gateway API: Exact, PathPrefix by path element)."""
    for rule in rules:
        for match in rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]:
            kind, value = match["path"]["type"], match["path"]["value"]
            if kind == "Exact" and path == value:
                return True
            prefix = value.rstrip("/")
            if kind == "PathPrefix" and (path == prefix or path.startswith(prefix + "/") or not prefix):
                return True
    return False


def _ingress_routes(path: str, ingress: dict[str, Any]) -> bool:
    """Whether an Ingress's paths match ``path`` (Exact, Prefix by path element)."""
    for rule in ingress["spec"]["rules"]:
        for item in rule["http"]["paths"]:
            value = item["path"]
            if item["pathType"] == "Exact" and path == value:
                return True
            prefix = value.rstrip("/")
            if item["pathType"] == "Prefix" and (path == prefix or path.startswith(prefix + "/") or not prefix):
                return True
    return False


def test_matchers_are_live() -> None:
    """The matchers above follow the specs' element-wise prefix rule."""
    rules = [{"matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}]}]
    assert _gateway_routes("/v2/models/x/infer", rules) and not _gateway_routes("/v2x", rules)
    assert _gateway_routes("/metrics", [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}])


def test_ingress_off_by_default(kit: Any) -> None:
    """Item 7: a plain install claims no Ingress host; the kind values route through the HTTPRoute."""
    assert not kit.by_kind(kit.render(), "Ingress")
    kind = kit.render((KIND_VALUES,))
    assert not kit.by_kind(kind, "Ingress") and kit.by_kind(kind, "HTTPRoute")
    # The chart README said the default Ingress answered any host name; it says both are off.
    readme = re.sub(r"\s+", " ", (kit.chart / "README.md").read_text())
    assert "With the default values the Ingress" not in readme
    assert "the Ingress (`ingress.enabled`) and the HTTPRoute (`httpRoute.enabled`) are both off" in readme


@pytest.mark.parametrize("values", [(), (KIND_VALUES,)])
def test_httproute_publishes_only_the_api(kit: Any, values: tuple[str, ...]) -> None:
    """Item 8: the HTTPRoute (default and kind values) routes /predict and /v2/...; /metrics,
    /openapi.json and the probes stay on the Service."""
    sets = () if values else ("httpRoute.enabled=true",)
    route = kit.one(kit.render(values, sets), "HTTPRoute")
    rules = route["spec"]["rules"]
    assert [p for p in API_PATHS if not _gateway_routes(p, rules)] == []
    assert [p for p in PRIVATE_PATHS if _gateway_routes(p, rules)] == []
    code, results = kit.validate_crds([route])
    assert code == 0, results


def test_ingress_publishes_only_the_api(kit: Any) -> None:
    """Item 8: the Ingress, when on, routes /predict and /v2/... only."""
    ingress = kit.one(kit.render(sets=("ingress.enabled=true",)), "Ingress")
    assert [p for p in API_PATHS if not _ingress_routes(p, ingress)] == []
    assert [p for p in PRIVATE_PATHS if _ingress_routes(p, ingress)] == []
    _validate(ingress)


def test_metrics_stay_reachable_on_the_service(kit: Any) -> None:
    """Item 8: the ServiceMonitor still scrapes /metrics through the Service's named port."""
    docs = kit.render(("everything-on-values.yaml",))
    monitor = kit.one(docs, "ServiceMonitor")
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["port"] == kit.one(docs, "Service")["spec"]["ports"][0]["name"]


# ------------------------------------------------------- 9 refused model probes ---


def _probe_ok(url: str) -> bool:
    """A kubelet HTTP probe: success on 200-399."""
    try:
        return 200 <= requests.get(url, timeout=2, allow_redirects=False).status_code < 400
    except requests.RequestException:
        return False


def test_refused_model_pod_stays_up_and_unready_under_the_charts_probes(
    kit: Any, server_factory: Any, model_copy: Path
) -> None:
    """Item 9: the chart's probes, run as the kubelet would against a real gunicorn whose model was
    refused (tampered file): startup and liveness succeed (no restart), readiness fails with the reason."""
    container = kit.container(kit.render())
    with (model_copy / "model.skops").open("r+b") as handle:
        handle.seek(64)
        handle.write(b"evil")
    server = server_factory(wait=False, MODEL_PATH=str(model_copy))
    def probe_url(kind: str) -> str:
        """The probe's URL on the port it names, as the kubelet calls it (`health`: the master's HEALTH_PORT)."""
        get = container[kind]["httpGet"]
        base = {"health": server.health_url, "http": server.url}[get["port"]]
        return f"{base}{get['path']}"

    startup = container["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    deadline = time.monotonic() + min(budget, 60)
    while not _probe_ok(probe_url("startupProbe")):
        assert time.monotonic() < deadline, f"startup probe {startup['httpGet']['path']} never passes: restart loop"
        time.sleep(startup["periodSeconds"] / 4)
    for _ in range(3):
        assert _probe_ok(probe_url("livenessProbe"))
        assert not _probe_ok(probe_url("readinessProbe"))
        time.sleep(0.2)
    reason = requests.get(probe_url("readinessProbe"), timeout=5).json()
    assert "sha256" in reason["reason"]


def test_startup_probe_never_depends_on_the_model(kit: Any) -> None:
    """Item 9: the startup probe checks what liveness checks (/healthz), never /readyz; the values schema
    describes each probe as rendered (its port and default path)."""
    for values in ((), (KIND_VALUES,)):
        container = kit.container(kit.render(values))
        assert container["startupProbe"]["httpGet"]["path"] == container["livenessProbe"]["httpGet"]["path"]
        assert container["startupProbe"]["httpGet"]["path"] != container["readinessProbe"]["httpGet"]["path"]
    container = kit.container(kit.render())
    schema = json.loads((kit.chart / "values.schema.json").read_text())["properties"]["probes"]["properties"]
    for kind in ("startup", "readiness", "liveness"):
        get = container[f"{kind}Probe"]["httpGet"]
        described = schema[kind]["properties"]["path"]["description"]
        assert f"`{get['port']}` port" in described and f"default {get['path']})" in described, (kind, described)
    assert "model is loaded" not in schema["startup"]["description"]


# --------------------------------------------------------------- 10 dashboard ---

WEB_PODS = ("rs-reviewserve-7d9c5b8f6d-x2zkq", "rs-reviewserve-5fd8b-9qxvw")
OTHER_PODS = (
    "rs-reviewserve-stream-6c9f7d8b5c-abcde",
    "rs-reviewserve-stream-6c9f7d8b5c-2qx9z",
    "rs-reviewserve-redis-dev-0",
    "rs-reviewserve-redis-dev-5d8f7c9b4-4rt6m",
    "rs-reviewserve-score-backfill-1-0-k8x2b",
    "rs-reviewserve-score-29400000-1-9zcxt",
    "rs-reviewserve-test",
    "rs-reviewserve-canary-7d9c5b8f6d-x2zkq",
)


def test_dashboard_cpu_and_memory_select_the_web_pods_only(kit: Any) -> None:
    """Item 10: the CPU and memory panels' pod regex (Prometheus: fully anchored) matches the web
    Deployment's pods and none of the stream, dev Redis, batch or test pods of the same release."""
    dashboard = json.loads((kit.chart / "files" / "grafana-dashboard.json").read_text())
    panels = [p for p in dashboard["panels"] if "container_" in json.dumps(p.get("targets", []))]
    assert len(panels) == 2
    for panel in panels:
        for target in panel["targets"]:
            regex = re.search(r'pod=~"([^"]+)"', target["expr"]).group(1).replace("$service", "rs-reviewserve")
            assert [p for p in WEB_PODS if not re.fullmatch(regex, p)] == []
            assert [p for p in OTHER_PODS if re.fullmatch(regex, p)] == [], regex
            assert 'container="reviewserve"' in target["expr"]


# ------------------------------------------------------------ 11, 12 alerts ---

NS, SVC = "reviewserve", "rs-reviewserve"
SEL = f'namespace="{NS}",service="{SVC}"'


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        missing_tool("promtool", "prometheus")
    return path


def _rules(kit: Any, tmp_path: Path, *sets: str, values: tuple[str, ...] = ("everything-on-values.yaml",)) -> Path:
    """The rendered rules as a Prometheus rules file, annotations left out (test_prometheus_rules.py checks
    them): these tests are about when an alert fires."""
    rule = copy.deepcopy(kit.one(kit.render(values, sets), "PrometheusRule"))  # the render is cached: never edit it
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            r.pop("annotations", None)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return path


def _alert_names(path: Path) -> list[str]:
    return [r["alert"] for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]


def _promtool_test(promtool: str, rules: Path, tmp_path: Path, tests: list[dict[str, Any]]) -> None:
    test_file = tmp_path / "rules.test.yaml"
    test_file.write_text(
        yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": tests}, sort_keys=False)
    )
    res = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def _requests(path: str, status: str, per_minute: int) -> dict[str, str]:
    """Counter series of one route and status, as prometheus_flask_exporter exports both metrics."""
    return {
        "series": f'flask_http_request_duration_seconds_count{{{SEL},method="GET",path="{path}",status="{status}"}}',
        "values": f"0+{per_minute}x30",
    }


def _total(status: str, per_minute: int) -> dict[str, str]:
    return {
        "series": f'flask_http_request_total{{{SEL},method="GET",status="{status}"}}',
        "values": f"0+{per_minute}x30",
    }


def test_readiness_503s_and_probe_traffic_are_not_errors(promtool: str, kit: Any, tmp_path: Path) -> None:
    """Item 11: pods shutting down answer /readyz 503 to the kubelet and the proxy; with healthy
    prediction traffic that is no error-ratio alert. A real 5xx share of /predict or V2 infer still is."""
    rules = _rules(kit, tmp_path)
    quiet = [
        _requests("/predict", "200", 60), _requests("/readyz", "503", 30), _requests("/readyz", "200", 30),
        _requests("/healthz", "200", 30), _total("200", 120), _total("503", 30),
    ]  # fmt: skip
    failing = [
        _requests("/predict", "200", 60), _requests("/v2/models/<name>/infer", "500", 10),
        _requests("/v2/models/<name>/infer", "200", 30), _requests("/readyz", "200", 30),
    ]  # fmt: skip
    _promtool_test(promtool, rules, tmp_path, [
        {"interval": "1m", "input_series": quiet,
         "alert_rule_test": [{"eval_time": "15m", "alertname": "ReviewserveHighErrorRatio", "exp_alerts": []}]},
        {"interval": "1m", "input_series": failing,
         "alert_rule_test": [{"eval_time": "15m", "alertname": "ReviewserveHighErrorRatio", "exp_alerts": [
             {"exp_labels": {"severity": "warning", "namespace": NS, "service": SVC}}]}]},
    ])  # fmt: skip


def test_p99_alert_covers_the_v2_infer_route(promtool: str, kit: Any, tmp_path: Path) -> None:
    """Item 11: slow V2 infer requests (with a fast /predict) fire the p99 alert."""
    rules = _rules(kit, tmp_path)
    bucket = f'flask_http_request_duration_seconds_bucket{{{SEL},method="POST",status="200"'
    series = []
    for path, slow in (("/predict", False), ("/v2/models/<name>/infer", True)):
        for le, count in (("0.5", 0 if slow else 60), ("2.5", 60), ("+Inf", 60)):
            series.append({"series": f'{bucket},path="{path}",le="{le}"}}', "values": f"0+{count}x30"})
    _promtool_test(promtool, rules, tmp_path, [
        {"interval": "1m", "input_series": series,
         "alert_rule_test": [{"eval_time": "15m", "alertname": "ReviewserveHighP99Latency", "exp_alerts": [
             {"exp_labels": {"severity": "warning", "namespace": NS, "service": SVC}}]}]},
    ])  # fmt: skip


def test_targets_down_only_with_the_service_monitor(kit: Any, tmp_path: Path) -> None:
    """Item 12: without the chart's ServiceMonitor there is no `up` of this service, and absent() would
    fire forever: the alert is left out then. kube-state-metrics alerts can be left out too."""
    without = _rules(kit, tmp_path, "metrics.serviceMonitor.enabled=false")
    assert "ReviewserveTargetsDown" not in _alert_names(without)
    assert "ReviewserveTargetsDown" in _alert_names(_rules(kit, tmp_path))
    no_ksm = _rules(kit, tmp_path, "metrics.prometheusRule.kubeStateMetrics=false")
    assert "ReviewserveNoReadyReplicas" not in _alert_names(no_ksm)


def test_stream_lag_alert(promtool: str, kit: Any, tmp_path: Path) -> None:
    """Item 12: the consumers' reviewserve_stream_group_lag (every consumer pod reports the group's lag)
    above the threshold for `for` fires one alert per group; a draining backlog does not."""
    rules = _rules(kit, tmp_path, "stream.enabled=true", "stream.redis.existingSecret=r",
                   "metrics.prometheusRule.streamLagThreshold=1000")  # fmt: skip
    assert "ReviewserveStreamLagHigh" in _alert_names(rules)

    def lag(pod: str, values: str) -> dict[str, str]:
        labels = f'namespace="{NS}",pod="{pod}",stream="reviews",group="scorers"'
        return {"series": f"reviewserve_stream_group_lag{{{labels}}}", "values": values}

    _promtool_test(promtool, rules, tmp_path, [
        {"interval": "1m", "input_series": [lag("a", "5000x30"), lag("b", "5000x30")],
         "alert_rule_test": [{"eval_time": "15m", "alertname": "ReviewserveStreamLagHigh", "exp_alerts": [
             {"exp_labels": {"severity": "warning", "namespace": NS, "stream": "reviews", "group": "scorers"}}]}]},
        {"interval": "1m", "input_series": [lag("a", "5000-500x30"), lag("b", "5000-500x30")],
         "alert_rule_test": [{"eval_time": "15m", "alertname": "ReviewserveStreamLagHigh", "exp_alerts": []}]},
    ])  # fmt: skip


def test_batch_cronjob_not_succeeded_alert(promtool: str, kit: Any, tmp_path: Path) -> None:
    """Item 12: kube-state-metrics' CronJob metrics: the last scheduled run failed (no success since it
    was scheduled, past activeDeadlineSeconds) or the next run is overdue fires; a successful schedule
    does not."""
    rules = _rules(kit, tmp_path, "batch.databaseSecret.name=db", "batch.cronJob.enabled=true",
                   "batch.cronJob.activeDeadlineSeconds=600", "batch.cronJob.startingDeadlineSeconds=300")  # fmt: skip
    assert "ReviewserveBatchNotSucceeded" in _alert_names(rules)
    cron = f'namespace="{NS}",cronjob="{SVC}-score"'

    def series(last_schedule: int, last_success: int | None, next_schedule: int) -> list[dict[str, str]]:
        out = [
            {"series": f"kube_cronjob_status_last_schedule_time{{{cron}}}", "values": f"{last_schedule}x60"},
            {"series": f"kube_cronjob_next_schedule_time{{{cron}}}", "values": f"{next_schedule}x60"},
        ]
        if last_success is not None:
            out.append(
                {"series": f"kube_cronjob_status_last_successful_time{{{cron}}}", "values": f"{last_success}x60"}
            )
        return out

    firing = [{"exp_labels": {"severity": "warning", "namespace": NS, "cronjob": f"{SVC}-score"}}]
    # Times in seconds from 0; evaluated at 40m = 2400 s.
    _promtool_test(promtool, rules, tmp_path, [
        # The run scheduled at 60 s succeeded at 400 s; the next one is at 3600 s: quiet.
        {"interval": "1m", "input_series": series(60, 400, 3600),
         "alert_rule_test": [{"eval_time": "40m", "alertname": "ReviewserveBatchNotSucceeded", "exp_alerts": []}]},
        # The run scheduled at 60 s has not succeeded (last success the day before): fires.
        {"interval": "1m", "input_series": series(60, -86000, 3600),
         "alert_rule_test": [{"eval_time": "40m", "alertname": "ReviewserveBatchNotSucceeded", "exp_alerts": firing}]},
        # Never succeeded at all: fires.
        {"interval": "1m", "input_series": series(60, None, 3600),
         "alert_rule_test": [{"eval_time": "40m", "alertname": "ReviewserveBatchNotSucceeded", "exp_alerts": firing}]},
        # Still running, within its deadline (scheduled at 2000 s): quiet.
        {"interval": "1m", "input_series": series(2000, 400, 5600),
         "alert_rule_test": [{"eval_time": "40m", "alertname": "ReviewserveBatchNotSucceeded", "exp_alerts": []}]},
        # The last run succeeded but the next (due at 600 s) never started (missed, suspended): fires.
        {"interval": "1m", "input_series": series(60, 400, 600),
         "alert_rule_test": [{"eval_time": "40m", "alertname": "ReviewserveBatchNotSucceeded", "exp_alerts": firing}]},
    ])  # fmt: skip


# ---------------------------------------------------------- 15 topology spread ---


@pytest.mark.parametrize("values", [(), (KIND_VALUES,), ("everything-on-values.yaml",)])
def test_topology_spread_per_rollout(kit: Any, values: tuple[str, ...]) -> None:
    """Item 15: every constraint carries matchLabelKeys [pod-template-hash], so during a rollout the new
    ReplicaSet's pods are spread among themselves (not skewed by the old ones)."""
    deployment = kit.deployment(kit.render(values))
    constraints = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert constraints and all(c.get("matchLabelKeys") == ["pod-template-hash"] for c in constraints), constraints
    _validate(deployment)

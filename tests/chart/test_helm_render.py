"""Helm 3 and Helm 4: lint, template, schema and Kubernetes API validation of the chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

CI_VALUES = sorted(p.name for p in (Path(__file__).resolve().parents[2] / "charts/reviewserve/ci").glob("*.yaml"))
HELMS = ("helm3", "helm4")
K8S_VERSIONS = ("1.29.0", "1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0")
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
}

EXPECTED_KINDS: dict[str, set[str]] = {
    "default-values.yaml": {"ConfigMap", "Deployment", "Pod", "PodDisruptionBudget", "Service"}
    | {"ServiceAccount"},
    "hpa-on-values.yaml": {"ConfigMap", "Deployment", "Pod", "PodDisruptionBudget", "Service"}
    | {"ServiceAccount", "HorizontalPodAutoscaler"},
    "everything-on-values.yaml": {
        "ConfigMap",
        "Deployment",
        "Ingress",
        "Pod",
        "PodDisruptionBudget",
        "Service",
    }
    | {"ServiceAccount", "HorizontalPodAutoscaler", "NetworkPolicy", "ServiceMonitor", "PrometheusRule"}
    | {"HTTPRoute"},
    "extensions-values.yaml": {"ConfigMap", "Deployment", "Pod", "PodDisruptionBudget", "Service"}
    | {"ServiceAccount"},
    "minimal-values.yaml": {"ConfigMap", "Deployment", "Pod", "Service"},
    # The stream consumers (issue 9): their Deployment plus HPA / KEDA ScaledObject / dev Redis.
    "stream-on-values.yaml": {"ConfigMap", "Deployment", "Pod", "PodDisruptionBudget", "Service"}
    | {"ServiceAccount", "HorizontalPodAutoscaler", "NetworkPolicy", "ServiceMonitor", "PodMonitor"},
    "stream-kind-values.yaml": {"ConfigMap", "Deployment", "Pod", "PodDisruptionBudget", "Service"}
    | {"ServiceAccount", "ScaledObject", "Secret", "NetworkPolicy"},
    "batch-on-values.yaml": {"ConfigMap", "Deployment", "Pod", "PodDisruptionBudget", "Service"}
    | {"ServiceAccount", "NetworkPolicy", "CronJob", "Job"},
    # A second track of web pods (issue 19): a canary split or a shadow mirror on the HTTPRoute.
    "canary-values.yaml": {"ConfigMap", "Deployment", "Pod", "PodDisruptionBudget", "Service"}
    | {"ServiceAccount", "HTTPRoute"},
    "shadow-values.yaml": {"ConfigMap", "Deployment", "Pod", "PodDisruptionBudget", "Service"}
    | {"ServiceAccount", "HTTPRoute"},
}


def test_ci_values_files_present() -> None:
    """The documented value sets exist (and nothing else hides in ci/)."""
    assert set(CI_VALUES) == set(EXPECTED_KINDS)


@pytest.mark.parametrize("values", CI_VALUES)
@pytest.mark.parametrize("helm", HELMS)
def test_lint_strict(kit: Any, helm: str, values: str) -> None:
    """``helm lint --strict`` passes with every CI values file."""
    res = kit.helm(helm, "lint", "--strict", str(kit.chart), "-f", kit.values_path(values))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in res.stdout


@pytest.mark.parametrize("values", CI_VALUES)
@pytest.mark.parametrize("helm", HELMS)
def test_template_kinds(kit: Any, helm: str, values: str) -> None:
    """``helm template`` renders exactly the expected kinds for each values file."""
    docs = kit.render((values,), helm=helm)
    assert {d["kind"] for d in docs} == EXPECTED_KINDS[values]
    for doc in docs:
        assert doc["metadata"]["namespace"] == kit.namespace, doc["metadata"]


@pytest.mark.parametrize("values", CI_VALUES)
def test_helm3_and_helm4_render_the_same(kit: Any, values: str) -> None:
    """Both Helm majors produce identical manifests."""
    assert kit.render((values,), helm="helm3") == kit.render((values,), helm="helm4")


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("values", CI_VALUES)
def test_kubernetes_validate_strict(kit: Any, values: str, version: str) -> None:
    """Every built-in resource validates strictly (unknown fields rejected) for Kubernetes 1.29-1.35.

    The Prometheus Operator kinds have no schema in kubernetes-validate; they are validated
    against their CRD schemas by test_crd_resources_match_crd_schemas instead.
    """
    for doc in kit.render((values,)):
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} invalid for {version} at {path}: {exc.message}")


def test_kubernetes_validate_catches_errors(kit: Any) -> None:
    """The validator is live: a misspelled field and a wrong type are rejected."""
    deployment = json.loads(json.dumps(kit.deployment(kit.render())))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.29.0", strict=True)
    service = json.loads(json.dumps(kit.one(kit.render(), "Service")))
    service["spec"]["ports"][0]["port"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, "1.35.0", strict=True)


def _validate_crds(kit: Any, resources: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    """Run tests/chart/validate_crds.mjs (CRD-schema validators from npm) on resources."""
    return kit.validate_crds(resources)


@pytest.mark.parametrize("helm", HELMS)
def test_crd_resources_match_crd_schemas(kit: Any, helm: str) -> None:
    """ServiceMonitor, PrometheusRule and HTTPRoute validate against their CRD schemas."""
    docs = [
        d for d in kit.render(("everything-on-values.yaml",), helm=helm) if (d["apiVersion"], d["kind"]) in CRD_KINDS
    ]
    assert {d["kind"] for d in docs} == {"ServiceMonitor", "PrometheusRule", "HTTPRoute"}
    route = kit.render(sets=("httpRoute.enabled=true",), helm=helm)
    docs += [d for d in route if d["kind"] == "HTTPRoute"]  # the default route too
    for values in ("canary-values.yaml", "shadow-values.yaml"):  # weighted backendRefs; the RequestMirror filter
        docs += [d for d in kit.render((values,), helm=helm) if d["kind"] == "HTTPRoute"]
    code, results = _validate_crds(kit, docs)
    assert code == 0, results
    assert [r["ok"] for r in results] == [True] * 6


def test_httproute_off_by_default_and_sends_to_the_service(kit: Any) -> None:
    """No HTTPRoute unless enabled; every rule's backend is this release's Service port."""
    assert not kit.by_kind(kit.render(), "HTTPRoute")
    docs = kit.render(("everything-on-values.yaml",))
    route = kit.one(docs, "HTTPRoute")
    svc = kit.one(docs, "Service")
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateways", "sectionName": "https"}]
    for rule in route["spec"]["rules"]:
        assert rule["backendRefs"] == [
            {"name": svc["metadata"]["name"], "port": svc["spec"]["ports"][0]["port"], "weight": 1}
        ]


def test_scaled_object_matches_keda_crd_schema(kit: Any) -> None:
    """The stream consumers' KEDA ScaledObject (and PodMonitor) validate against their CRD schemas."""
    docs = [d for d in kit.render(("stream-kind-values.yaml",)) if d["kind"] == "ScaledObject"]
    assert len(docs) == 1
    code, results = _validate_crds(kit, docs)
    assert code == 0, results
    monitors = [d for d in kit.render(("stream-on-values.yaml",)) if (d["apiVersion"], d["kind"]) in CRD_KINDS]
    assert {d["kind"] for d in monitors} == {"ServiceMonitor", "PodMonitor"}
    code, results = _validate_crds(kit, monitors)
    assert code == 0, results
    bad = json.loads(json.dumps(docs[0]))
    bad["spec"]["triggers"][0]["metadata"]["lagCount"] = 200  # KEDA wants strings
    bad["spec"]["minReplicaCount"] = "1"
    code, results = _validate_crds(kit, [bad])
    assert code == 1 and not results[0]["ok"]
    assert "lagCount must be string" in results[0]["error"], results


def test_crd_validator_catches_errors(kit: Any) -> None:
    """The CRD validator is live: wrong types and unknown values are rejected."""
    docs = {d["kind"]: d for d in kit.render(("everything-on-values.yaml",))}
    monitor = json.loads(json.dumps(docs["ServiceMonitor"]))
    monitor["spec"]["endpoints"] = "http"
    rule = json.loads(json.dumps(docs["PrometheusRule"]))
    rule["spec"]["groups"][0]["rules"][0]["for"] = 300
    route = json.loads(json.dumps(docs["HTTPRoute"]))
    route["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Prefix"  # Ingress spelling, not Gateway API's
    port = json.loads(json.dumps(docs["HTTPRoute"]))
    port["spec"]["rules"][0]["backendRefs"][0]["port"] = "http"
    code, results = _validate_crds(kit, [monitor, rule, route, port])
    assert code == 1
    assert [r["ok"] for r in results] == [False, False, False, False]


INVALID_VALUES: list[tuple[str, dict[str, Any], str, str]] = [
    # (id, values, helm3 message fragment, helm4 message fragment)
    ("replicas-string", {"replicaCount": "two"}, "replicaCount", "/replicaCount"),
    ("pull-policy", {"image": {"pullPolicy": "Sometimes"}}, "image.pullPolicy", "/image/pullPolicy"),
    (
        "writable-root",
        {"securityContext": {"readOnlyRootFilesystem": False}},
        "securityContext.readOnlyRootFilesystem",
        "/securityContext/readOnlyRootFilesystem",
    ),
    ("root-user", {"podSecurityContext": {"runAsUser": 0}}, "podSecurityContext.runAsUser", "/runAsUser"),
    ("bad-port", {"config": {"port": 70000}}, "config.port", "/config/port"),
    ("log-level", {"config": {"logLevel": "LOUD"}}, "config.logLevel", "/config/logLevel"),
    ("unknown-key", {"replicas": 3}, "Additional property replicas", "replicas"),
    ("bad-digest", {"image": {"digest": "latest"}}, "image.digest", "/image/digest"),
    ("missing-limits", {"resources": {"limits": None}}, "limits", "limits"),
    ("missing-memory-limit", {"resources": {"limits": {"memory": None}}}, "memory", "memory"),
    ("cpu-suffix", {"resources": {"requests": {"cpu": "2Gi"}}}, "resources.requests.cpu", "/cpu"),
    ("typo-extra-volume", {"extraVolume": []}, "Additional property extraVolume", "extraVolume"),
    ("extra-volumes-not-list", {"extraVolumes": {"name": "x"}}, "extraVolumes", "/extraVolumes"),
    ("extra-container-no-image", {"extraContainers": [{"name": "side"}]}, "image", "image"),
    ("env-from-typo", {"extraEnvFrom": [{"secretRefs": {"name": "s"}}]}, "secretRefs", "secretRefs"),
    ("node-port-range", {"service": {"type": "NodePort", "nodePort": 80}}, "service.nodePort", "/nodePort"),
    (
        "traffic-policy",
        {"service": {"externalTrafficPolicy": "Remote"}},
        "externalTrafficPolicy",
        "/externalTrafficPolicy",
    ),
    ("common-label-number", {"commonLabels": {"team": 5}}, "commonLabels", "/commonLabels"),
    ("httproute-typo", {"httpRoute": {"enabled": True, "hostname": ["x"]}}, "hostname", "hostname"),
    ("pdb-max-zero", {"podDisruptionBudget": {"maxUnavailable": 0}}, "maxUnavailable", "maxUnavailable"),
    ("keepalive-type", {"config": {"keepalive": "75s"}}, "config.keepalive", "/config/keepalive"),
    (
        "ingress-path",
        {"ingress": {"hosts": [{"host": "x.example.com", "paths": [{"path": "predict", "pathType": "Prefix"}]}]}},
        "path",
        "/path",
    ),
]


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize(("values", "msg3", "msg4"), [pytest.param(v, m3, m4, id=i) for i, v, m3, m4 in INVALID_VALUES])
def test_schema_rejects_invalid_values(
    kit: Any, tmp_path: Path, helm: str, values: dict[str, Any], msg3: str, msg4: str
) -> None:
    """values.schema.json rejects wrong values and names the offending key."""
    bad = tmp_path / "bad-values.yaml"
    bad.write_text(yaml.safe_dump(values))
    res = kit.template((str(bad),), helm=helm)
    assert res.returncode != 0, f"accepted invalid values {values}"
    assert "values don't meet the specifications of the schema" in res.stderr, res.stderr
    assert (msg3 if helm == "helm3" else msg4) in res.stderr, res.stderr


@pytest.mark.parametrize("helm", HELMS)
def test_grace_period_must_cover_shutdown(kit: Any, helm: str) -> None:
    """The template fails with a clear message when the grace period is too short."""
    res = kit.template(
        sets=(
            "terminationGracePeriodSeconds=26",
            "lifecycle.preStopSleepSeconds=5",
            "config.gracefulTimeout=20",
        ),
        helm=helm,
    )
    assert res.returncode != 0
    assert (
        "terminationGracePeriodSeconds (26) must be greater than lifecycle.preStopSleepSeconds (5) "
        "+ config.shutdownDelay (1) + config.gracefulTimeout (20) = 26"
    ) in res.stderr
    ok = kit.template(sets=("terminationGracePeriodSeconds=27",), helm=helm)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("helm", HELMS)
def test_hpa_min_above_max_fails(kit: Any, helm: str) -> None:
    """autoscaling.minReplicas > maxReplicas is refused."""
    res = kit.template(
        sets=("autoscaling.enabled=true", "autoscaling.minReplicas=5", "autoscaling.maxReplicas=3"), helm=helm
    )
    assert res.returncode != 0
    assert "autoscaling.minReplicas (5) must not exceed autoscaling.maxReplicas (3)" in res.stderr


def test_notes_print_ingress_curl_and_port_forward(kit: Any) -> None:
    """NOTES.txt shows the curl through the ingress and the port-forward alternative."""
    res = kit.helm(
        "helm4", "install", "--dry-run=client", kit.release, str(kit.chart), "--namespace", kit.namespace,
        "--set", "ingress.enabled=true",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    notes = res.stdout.split("NOTES:", 1)[1]
    assert "curl -s -X POST http://localhost/predict" in notes
    assert '{"review": "This Chatbot is amazing"}' in notes
    assert f"kubectl -n {kit.namespace} port-forward svc/{kit.fullname} 9696:9696" in notes
    assert "curl -s -X POST http://localhost:9696/predict" in notes
    tls = kit.helm(
        "helm4",
        "install",
        "--dry-run=client",
        kit.release,
        str(kit.chart),
        "-f",
        kit.values_path("everything-on-values.yaml"),
    )
    assert tls.returncode == 0, tls.stderr
    assert "curl -s -X POST https://reviewserve.example.com/predict" in tls.stdout
    assert "get hpa" in tls.stdout

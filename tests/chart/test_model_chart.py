"""The chart's model source, rollout, canary and shadow values (issue 19), rendered with helm."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.chart

CANARY = "canary-values.yaml"
SHADOW = "shadow-values.yaml"


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


def test_model_values_reach_the_configmap_and_the_pods(kit: Any) -> None:
    docs = kit.render((CANARY,))
    data = kit.one(docs, "ConfigMap")["data"]
    assert data["MODEL_URI"] == "s3://models/review-sentiment/1"
    assert (
        data["MODEL_SHA256"]
        == json.loads((kit.repo / "models/review-sentiment/1/card.json").read_text())["model_sha256"]
    )
    assert data["AWS_ENDPOINT_URL"] == "http://minio.storage:9000"
    assert (data["MODEL_CACHE_DIR"], data["TRACK"]) == ("/var/cache/reviewserve/models", "stable")
    container = kit.container(docs)
    assert {"secretRef": {"name": "model-store"}} in container["envFrom"]
    assert {"name": "model-cache", "mountPath": "/var/cache/reviewserve/models"} in container["volumeMounts"]
    volumes = {v["name"]: v for v in kit.deployment(docs)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model-cache"] == {"name": "model-cache", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}


def test_default_serves_the_image_model_without_store_settings(kit: Any) -> None:
    docs = kit.render()
    data = kit.one(docs, "ConfigMap")["data"]
    assert data["MODEL_URI"] == "" and data["MODEL_PATH"] == "/app/models/review-sentiment/1"
    assert "AWS_ENDPOINT_URL" not in data
    assert all("secretRef" not in e for e in kit.container(docs)["envFrom"])
    assert kit.by_kind(docs, "Deployment") == [kit.deployment(docs)]  # no second track
    assert "track" not in kit.one(docs, "Service")["spec"]["selector"]


def test_a_new_model_uri_rolls_the_pods_and_the_old_one_rolls_back(kit: Any) -> None:
    """The pod template changes with model.uri (the ConfigMap checksum), so upgrade/rollback roll the pods."""

    def checksum(uri: str) -> str:
        return kit.deployment(kit.render(sets=(f"model.uri={uri}",)))["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"
        ]

    assert checksum("s3://m/review-sentiment/1") != checksum("s3://m/review-sentiment/2")
    assert checksum("s3://m/review-sentiment/1") == checksum("s3://m/review-sentiment/1")


def test_canary_is_its_own_deployment_and_service_weighted_on_the_route(kit: Any) -> None:
    docs = kit.render((CANARY,))
    stable, canary = kit.deployment(docs), kit.one(docs, "Deployment", f"{kit.fullname}-canary")
    assert pod_labels(stable)["track"] == "stable" and pod_labels(canary)["track"] == "canary"
    assert canary["spec"]["selector"]["matchLabels"]["track"] == "canary"
    assert "track" not in stable["spec"]["selector"]["matchLabels"]  # immutable: unchanged from earlier releases
    assert canary["spec"]["replicas"] == 1
    env = {e["name"]: e["value"] for e in canary["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env == {"MODEL_URI": "s3://models/review-sentiment/2", "MODEL_SHA256": "", "TRACK": "canary"}
    # Everything else is the stable pod's: probes, resources, security, volumes.
    strip = ("env",)
    one = {k: v for k, v in stable["spec"]["template"]["spec"]["containers"][0].items() if k not in strip}
    two = {k: v for k, v in canary["spec"]["template"]["spec"]["containers"][0].items() if k not in strip}
    assert one == two
    services = {s["metadata"]["name"]: s["spec"]["selector"] for s in kit.by_kind(docs, "Service")}
    assert services[kit.fullname]["track"] == "stable" and services[f"{kit.fullname}-canary"]["track"] == "canary"
    route = kit.one(docs, "HTTPRoute")
    for rule in route["spec"]["rules"]:
        assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == [
            (kit.fullname, 80),
            (f"{kit.fullname}-canary", 20),
        ]
        assert "filters" not in rule


def test_shadow_mirrors_every_request_to_the_second_track(kit: Any) -> None:
    docs = kit.render((SHADOW,))
    kit.one(docs, "Deployment", f"{kit.fullname}-canary")
    for rule in kit.one(docs, "HTTPRoute")["spec"]["rules"]:
        assert [b["name"] for b in rule["backendRefs"]] == [kit.fullname]
        assert rule["filters"] == [
            {
                "type": "RequestMirror",
                "requestMirror": {"backendRef": {"name": f"{kit.fullname}-canary", "port": 9696}},
            }
        ]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("canary.enabled=true", "shadow.enabled=true", "httpRoute.enabled=true", "canary.model.uri=s3://m/2"),
         "exclusive"),
        (("canary.enabled=true", "canary.model.uri=s3://m/2"), "need httpRoute.enabled"),
        (("shadow.enabled=true", "httpRoute.enabled=true"), "need canary.model.uri"),
        (("model.uri=ftp://m/1",), "model.uri"),
        (("model.sha256=abc",), "model.sha256"),
        (("canary.weight=101",), "canary.weight"),
    ],
)  # fmt: skip
def test_bad_combinations_fail_to_render(kit: Any, sets: tuple[str, ...], message: str) -> None:
    result = kit.template(sets=sets)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_dashboard_compares_the_tracks(kit: Any) -> None:
    docs = kit.render(sets=("metrics.grafanaDashboard.enabled=true",))
    [config] = [d for d in kit.by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    panels = {p["title"]: p for p in json.loads(config["data"]["reviewserve.json"])["panels"]}
    for title in (
        "Positive rate by track",
        "Prediction p99 latency by track",
        "5xx ratio by track (prediction routes)",
    ):
        exprs = [t["expr"] for t in panels[title]["targets"]]
        assert exprs and all("by (track" in e and "$service-canary" in e for e in exprs), title
    assert "reviewserve_model_info" in panels["Model version by track (pods serving it)"]["targets"][0]["expr"]

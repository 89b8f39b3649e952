"""The stream consumers in the chart (issue 9): off by default, hardened like the web pods, wired to
the CLI's environment variables, secrets as files, HPA / KEDA / the kind-only Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

STREAM = "rs-reviewserve-stream"
WEB_SELECTOR = {"app.kubernetes.io/name": "reviewserve", "app.kubernetes.io/instance": "rs"}
STREAM_SELECTOR = {"app.kubernetes.io/name": "reviewserve-stream", "app.kubernetes.io/instance": "rs"}
CHART = Path(__file__).resolve().parents[2] / "charts" / "reviewserve"


def stream_deployment(kit: Any, docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The consumer Deployment."""
    return kit.one(docs, "Deployment", STREAM)


def consumer(kit: Any, docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The consumer container."""
    [container] = stream_deployment(kit, docs)["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """name -> value (or valueFrom) of a container's env."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_off_by_default(kit: Any) -> None:
    """No stream resource unless stream.enabled."""
    names = {d["metadata"]["name"] for d in kit.render()}
    assert not [n for n in names if "stream" in n or "redis" in n]


def test_stream_values_documented() -> None:
    """Every value from `stream:` to the end of values.yaml has a `# --` comment (on it or a parent)."""
    text = (CHART / "values.yaml").read_text()
    assert "stream" in yaml.safe_load(text)
    lines = text[text.index("\nstream:\n") + 1 :].splitlines()
    documented: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    comment = False
    for line in lines[1:]:
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            comment = comment or stripped.startswith("# --")
            continue
        indent = len(line) - len(line.lstrip())
        while documented and documented[-1][0] >= indent:
            documented.pop()
        inherited = any(d for _, d in documented)
        if not stripped.startswith("- "):
            is_leaf = not stripped.endswith(":")
            assert comment or inherited or not is_leaf, f"values.yaml stream.*: undocumented value {stripped!r}"
            documented.append((indent, comment or inherited))
        comment = False


@pytest.mark.parametrize("values", ["stream-on-values.yaml", "stream-kind-values.yaml"])
def test_consumer_pod_hardened_like_web(kit: Any, values: str) -> None:
    """Same pod and container security contexts, service account and token policy as the web pods."""
    docs = kit.render((values,))
    web = kit.deployment(docs)["spec"]["template"]["spec"]
    spec = stream_deployment(kit, docs)["spec"]["template"]["spec"]
    assert spec["securityContext"] == web["securityContext"]
    assert consumer(kit, docs)["securityContext"] == web["containers"][0]["securityContext"]
    assert consumer(kit, docs)["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == web["serviceAccountName"]
    assert consumer(kit, docs)["image"] == web["containers"][0]["image"]
    assert {v["name"] for v in spec["volumes"] if "emptyDir" in v} == {"tmp"}


@pytest.mark.parametrize("values", ["stream-on-values.yaml", "stream-kind-values.yaml"])
def test_consumers_never_behind_the_web_service(kit: Any, values: str) -> None:
    """Consumer pods do not match the web Service, PDB or Deployment selectors (own name label)."""
    docs = kit.render((values,))
    labels = stream_deployment(kit, docs)["spec"]["template"]["metadata"]["labels"]
    assert stream_deployment(kit, docs)["spec"]["selector"]["matchLabels"] == STREAM_SELECTOR
    service = kit.one(docs, "Service")["spec"]["selector"]
    for selector in (service, kit.deployment(docs)["spec"]["selector"]["matchLabels"]):
        assert selector == WEB_SELECTOR
        assert not all(labels.get(k) == v for k, v in selector.items())


def test_cli_contract_wired(kit: Any) -> None:
    """Command, env vars read by `reviewserve stream consume`, probes on the health port, consumer = pod name."""
    docs = kit.render(("stream-on-values.yaml",))
    c = consumer(kit, docs)
    assert c["command"] == ["reviewserve", "stream", "consume"]
    env = env_of(c)
    assert env["STREAM_CONSUMER"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert {k: env[k] for k in ("STREAM_NAME", "STREAM_RESULTS", "STREAM_DEAD_LETTER", "STREAM_GROUP")} == {
        "STREAM_NAME": "reviews",
        "STREAM_RESULTS": "predictions",
        "STREAM_DEAD_LETTER": "reviews:dead",
        "STREAM_GROUP": "archiver",
    }
    assert (env["STREAM_SINK"], env["STREAM_BATCH_SIZE"], env["STREAM_CLAIM_IDLE_MS"]) == ("sql", "128", "60000")
    assert env["STREAM_HEALTH_PORT"] == "9697" and env["EXTRA_SETTING"] == "on"
    assert c["ports"] == [{"name": "health", "containerPort": 9697, "protocol": "TCP"}]
    assert c["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert "replicas" not in stream_deployment(kit, docs)["spec"], "the HPA owns the replica count"


def test_secrets_are_files_not_env(kit: Any) -> None:
    """Redis and database URLs come from existing Secrets, mounted read-only; no secret in env."""
    docs = kit.render(("stream-on-values.yaml",))
    c = consumer(kit, docs)
    env = env_of(c)
    assert not any(isinstance(v, dict) and "secretKeyRef" in v for v in env.values())
    assert env["REDIS_URL_FILE"] == "/var/run/secrets/reviewserve/redis/url"
    assert env["DATABASE_URL_FILE"] == "/var/run/secrets/reviewserve/database/url"
    volumes = {v["name"]: v for v in stream_deployment(kit, docs)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["redis-url"]["secret"]["secretName"] == "reviewserve-redis"
    assert volumes["redis-url"]["secret"]["items"] == [{"key": "url", "path": "url"}]
    assert volumes["database-url"]["secret"]["secretName"] == "reviewserve-archive-db"
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["redis-url"]["readOnly"] is True and mounts["database-url"]["readOnly"] is True
    assert not kit.by_kind(docs, "Secret"), "the chart never creates the production Secrets"


def test_hpa_targets_consumers(kit: Any) -> None:
    """stream.autoscaling: a CPU HPA on the consumer Deployment."""
    docs = kit.render(("stream-on-values.yaml",))
    hpa = kit.one(docs, "HorizontalPodAutoscaler", STREAM)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": STREAM}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60


def test_keda_scaled_object_and_dev_redis(kit: Any) -> None:
    """stream.keda: redis-streams trigger on the group's lag; the dev Redis provides Secret and address."""
    docs = kit.render(("stream-kind-values.yaml",))
    scaled = kit.one(docs, "ScaledObject", STREAM)
    assert scaled["spec"]["scaleTargetRef"]["name"] == STREAM
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis-streams"
    assert trigger["metadata"] == {
        "address": "rs-reviewserve-redis-dev.reviewserve.svc:6379",
        "stream": "reviews",
        "consumerGroup": "scorers",
        "lagCount": "200",
    }
    assert "replicas" not in stream_deployment(kit, docs)["spec"]
    assert not kit.by_kind(docs, "HorizontalPodAutoscaler"), "KEDA makes its own HPA"
    secret = kit.one(docs, "Secret", "rs-reviewserve-redis-dev")
    assert secret["stringData"] == {"redis-url": "redis://rs-reviewserve-redis-dev:6379/0"}
    redis_dev = kit.one(docs, "Deployment", "rs-reviewserve-redis-dev")
    assert "NOT FOR PRODUCTION" in kit.template(("stream-kind-values.yaml",)).stdout
    assert redis_dev["metadata"]["labels"]["app.kubernetes.io/component"] == "redis-dev-not-for-production"
    pod = redis_dev["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    pending = kit.one(
        kit.render(("stream-kind-values.yaml",), sets=("stream.keda.metric=pendingEntries",)), "ScaledObject", STREAM
    )
    assert pending["spec"]["triggers"][0]["metadata"]["pendingEntriesCount"] == "200"


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("stream.enabled=true",), "stream.enabled needs stream.redis.existingSecret"),
        (
            ("stream.enabled=true", "stream.redis.existingSecret=r", "stream.sink=sql"),
            "stream.sink=sql needs stream.database.existingSecret",
        ),
        (
            (
                "stream.enabled=true",
                "stream.devRedis.enabled=true",
                "stream.autoscaling.enabled=true",
                "stream.keda.enabled=true",
            ),
            "both scale the consumers",
        ),
        (
            ("stream.enabled=true", "stream.redis.existingSecret=r", "stream.keda.enabled=true"),
            "stream.keda.enabled needs stream.keda.address",
        ),
    ],
)
def test_inconsistent_stream_values_fail(kit: Any, sets: tuple[str, ...], message: str) -> None:
    """Cross-field rules fail the render with a message naming the values."""
    res = kit.template(sets=sets)
    assert res.returncode != 0
    assert message in res.stderr


@pytest.mark.parametrize(
    ("sets", "fragment"),
    [
        (("stream.sink=kafka",), "sink"),
        (("stream.batchSize=0",), "batchSize"),
        (("stream.keda.metric=cpu",), "metric"),
        (("stream.keda.address=redis://x",), "address"),
        (("stream.devRedis.image.digest=latest",), "digest"),
        (("stream.replicas=3",), "replicas"),
    ],
)
def test_schema_rejects_bad_stream_values(kit: Any, sets: tuple[str, ...], fragment: str) -> None:
    """values.schema.json covers stream.* strictly (unknown keys, enums, patterns)."""
    res = kit.template(sets=sets)
    assert res.returncode != 0
    assert "values don't meet the specifications of the schema" in res.stderr
    assert fragment in res.stderr


def test_pod_monitor_scrapes_the_health_port(kit: Any) -> None:
    """With metrics.serviceMonitor on, a PodMonitor scrapes /metrics on the consumers' health port."""
    docs = kit.render(("stream-on-values.yaml",))
    monitor = kit.one(docs, "PodMonitor", STREAM)
    assert monitor["spec"]["selector"]["matchLabels"] == STREAM_SELECTOR
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "health"
    assert monitor["spec"]["podMetricsEndpoints"][0]["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert not kit.by_kind(kit.render(("stream-kind-values.yaml",)), "PodMonitor")

"""Values people really set, rendered as a cluster would take them (issue 7, "Values that break on a cluster").

Each test renders with Helm 3 and Helm 4 where the outcome is a render failure or a manifest rule
the API server enforces; the schema and kubernetes-validate cover the rest (test_helm_render.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

HELMS = ("helm3", "helm4")
SELECTOR = {"app.kubernetes.io/name": "reviewserve", "app.kubernetes.io/instance": "rs"}


def _config(kit: Any, docs: list[dict[str, Any]]) -> dict[str, str]:
    return kit.one(docs, "ConfigMap")["data"]


def _fails(kit: Any, helm: str, sets: tuple[str, ...], message: str) -> None:
    """Rendering with ``sets`` fails and names the problem."""
    res = kit.template(sets=sets, helm=helm)
    assert res.returncode != 0, f"rendered with {sets}"
    assert message in res.stderr, res.stderr


# ------------------------------------------------------------------ WORKERS ---


@pytest.mark.parametrize(
    ("sets", "workers"),
    [
        ((), "1"),  # limits.cpu "1"
        (("resources.limits.cpu=null",), "1"),  # requests.cpu 250m
        (("resources.limits.cpu=null", "resources.requests.cpu=2500m"), "3"),
        (("resources.limits.cpu=null", "resources.requests.cpu=2"), "2"),
        (("resources.limits.cpu=1.5",), "2"),
        (("resources.limits.cpu=3000m",), "3"),
        (("resources.limits.cpu=null", "config.workers=4"), "4"),
    ],
)
def test_workers_set_explicitly_from_cpu(kit: Any, sets: tuple[str, ...], workers: str) -> None:
    """WORKERS is a literal in the ConfigMap: config.workers, else limits.cpu, else requests.cpu, rounded up.

    Never the downward API: without a CPU limit it reports the node's CPUs (32 workers on a
    32-core node inside the memory limit). tests/docker/test_docker_workers.py runs it.
    """
    docs = kit.render(sets=sets)
    assert _config(kit, docs)["WORKERS"] == workers
    container = kit.container(docs)
    assert "WORKERS" not in {e["name"] for e in container.get("env", [])}
    assert "resourceFieldRef" not in json.dumps(kit.deployment(docs))


@pytest.mark.parametrize("helm", HELMS)
def test_no_cpu_at_all_is_refused(kit: Any, helm: str) -> None:
    """Neither config.workers nor any CPU quantity: refuse rather than guess from the node."""
    _fails(
        kit,
        helm,
        ("resources.limits.cpu=null", "resources.requests.cpu=null"),
        "config.workers is empty and resources has neither limits.cpu nor requests.cpu",
    )


# ----------------------------------------------------------------- strategy ---


@pytest.mark.parametrize("helm", HELMS)
def test_recreate_strategy_has_no_rolling_update(kit: Any, helm: str) -> None:
    """strategy.type=Recreate renders no rollingUpdate block (the API server rejects one)."""
    docs = kit.render(sets=("strategy.type=Recreate",), helm=helm)
    assert kit.deployment(docs)["spec"]["strategy"] == {"type": "Recreate"}
    kubernetes_validate.validate(kit.deployment(docs), "1.29.0", strict=True)
    rolling = kit.deployment(kit.render(helm=helm))["spec"]["strategy"]
    assert rolling == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


# ----------------------------------------------------------- extension points ---


def test_extension_points_render(kit: Any) -> None:
    """extraEnv/extraEnvFrom, volumes, mounts, sidecar, init container, labels, nodePort, traffic policy."""
    docs = kit.render(("extensions-values.yaml",))
    spec = kit.deployment(docs)["spec"]["template"]["spec"]
    app = kit.container(docs)
    assert [c["name"] for c in spec["containers"]] == ["reviewserve", "log-shipper"]
    assert [c["name"] for c in spec["initContainers"]] == ["wait-for-config"]
    assert {"name": "extra-config", "configMap": {"name": "reviewserve-extra", "optional": True}} in spec["volumes"]
    assert {"name": "extra-config", "mountPath": "/etc/reviewserve/extra", "readOnly": True} in app["volumeMounts"]
    # The chart's ConfigMap first: sources listed later override its keys.
    assert app["envFrom"][0] == {"configMapRef": {"name": kit.fullname}}
    assert {"secretRef": {"name": "reviewserve-env"}} in app["envFrom"][1:]
    token = next(e for e in app["env"] if e["name"] == "API_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "reviewserve-secrets", "key": "token"}
    svc = kit.one(docs, "Service")
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["externalTrafficPolicy"] == "Local"
    assert svc["spec"]["ports"][0]["nodePort"] == 30696
    assert _config(kit, docs)["WORKERS"] == "2"  # requests.cpu 1500m, no CPU limit
    assert "cpu" not in app["resources"]["limits"]
    # commonLabels on every resource, selector labels untouched, podLabels on the pods.
    for doc in docs:
        assert doc["metadata"]["labels"]["example.com/cost-center"] == "ml", doc["kind"]
    template_labels = kit.deployment(docs)["spec"]["template"]["metadata"]["labels"]
    assert template_labels["tier"] == "backend" and template_labels["example.com/cost-center"] == "ml"
    assert kit.deployment(docs)["spec"]["selector"]["matchLabels"] == SELECTOR


def test_labels_cannot_change_the_selector(kit: Any) -> None:
    """A commonLabels/podLabels key equal to a selector label does not change what the Service selects."""
    docs = kit.render(
        sets=(
            "commonLabels.app\\.kubernetes\\.io/name=other",
            "podLabels.app\\.kubernetes\\.io/instance=other",
        )
    )
    labels = kit.deployment(docs)["spec"]["template"]["metadata"]["labels"]
    assert {k: labels[k] for k in SELECTOR} == SELECTOR
    assert kit.one(docs, "Service")["spec"]["selector"] == SELECTOR


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("service.nodePort=30001",), "service.nodePort (30001) needs service.type NodePort or LoadBalancer"),
        (
            ("service.externalTrafficPolicy=Local",),
            "service.externalTrafficPolicy (Local) needs service.type NodePort or LoadBalancer",
        ),
    ],
)
def test_node_port_settings_need_a_node_port_service(kit: Any, helm: str, sets: tuple[str, ...], message: str) -> None:
    """nodePort / externalTrafficPolicy on a ClusterIP Service are refused (the API server would)."""
    _fails(kit, helm, sets, message)


# ---------------------------------------------------------------------- PDB ---


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("podDisruptionBudget.minAvailable=2",), "podDisruptionBudget.minAvailable (2) keeps all 2 pods"),
        (("podDisruptionBudget.minAvailable=100%",), "podDisruptionBudget.minAvailable (100%) keeps all 2 pods"),
        (
            ("replicaCount=4", "podDisruptionBudget.minAvailable=76%"),
            "podDisruptionBudget.minAvailable (76%) keeps all 4 pods of the minimum replica count (replicaCount)",
        ),
        (
            ("autoscaling.enabled=true", "autoscaling.minReplicas=3", "podDisruptionBudget.minAvailable=5"),
            "keeps all 3 pods of the minimum replica count (autoscaling.minReplicas)",
        ),
        (("podDisruptionBudget.maxUnavailable=0%",), "podDisruptionBudget.maxUnavailable (0%) allows no pod"),
    ],
)
def test_pdb_that_blocks_drains_is_refused(kit: Any, helm: str, sets: tuple[str, ...], message: str) -> None:
    """A PDB leaving no pod evictable at the minimum replica count is refused with a clear message."""
    _fails(kit, helm, sets, message)


@pytest.mark.parametrize(
    ("sets", "field", "value"),
    [
        (("podDisruptionBudget.minAvailable=1",), "minAvailable", 1),
        (("podDisruptionBudget.minAvailable=50%",), "minAvailable", "50%"),
        (("replicaCount=4", "podDisruptionBudget.minAvailable=75%"), "minAvailable", "75%"),
        ((), "maxUnavailable", 1),
    ],
)
def test_pdb_that_allows_drains_renders(kit: Any, sets: tuple[str, ...], field: str, value: Any) -> None:
    """PDBs leaving at least one pod evictable render as given."""
    pdb = kit.one(kit.render(sets=sets), "PodDisruptionBudget")
    assert pdb["spec"][field] == value


# ---------------------------------------------------------------- keepalive ---


def test_keepalive_outlasts_the_proxy_idle_timeout(kit: Any) -> None:
    """KEEPALIVE defaults to 75 s, above ingress-nginx's 60 s idle upstream keep-alive."""
    docs = kit.render()
    assert _config(kit, docs)["KEEPALIVE"] == "75"
    assert int(_config(kit, docs)["KEEPALIVE"]) > 60


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize(
    "sets", [("config.keepalive=60",), ("config.keepalive=5",), ("upstreamProxy.idleTimeoutSeconds=3600",)]
)
def test_keepalive_not_above_proxy_is_refused(kit: Any, helm: str, sets: tuple[str, ...]) -> None:
    """A keep-alive the proxy outlasts is refused: the proxy would reuse closed connections (502)."""
    res = kit.template(sets=sets, helm=helm)
    assert res.returncode != 0
    assert re.search(r"config\.keepalive \(\d+\) must be greater than upstreamProxy\.idleTimeoutSeconds", res.stderr)


# ------------------------------------------------------------------ ingress ---


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        ((), "1048576"),
        (("config.maxBodyBytes=4194304",), "4194304"),
        (
            ("config.maxBodyBytes=4194304", "ingress.annotations.nginx\\.ingress\\.kubernetes\\.io/proxy-body-size=8m"),
            "8m",
        ),
    ],
)
def test_ingress_body_size_follows_max_body_bytes(kit: Any, sets: tuple[str, ...], expected: str) -> None:
    """proxy-body-size is derived from config.maxBodyBytes unless set explicitly.

    tests/docker/test_docker_ingress.py sends a body above ingress-nginx's 1m default through a
    real nginx configured from this annotation.
    """
    ing = kit.one(kit.render(sets=("ingress.enabled=true", *sets)), "Ingress")
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == expected


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (("ingress.enabled=true",), ("error timeout http_503 non_idempotent", "2")),
        (
            (
                "ingress.enabled=true",
                "ingress.annotations.nginx\\.ingress\\.kubernetes\\.io/proxy-next-upstream=error timeout",
            ),
            ("error timeout", "2"),
        ),
    ],
)
def test_ingress_retries_a_shed_request_once(kit: Any, sets: tuple[str, ...], expected: tuple[str, str]) -> None:
    """A shed 503 (never parsed nor scored) may go, POST included, to one other replica; annotations set win.

    tests/docker/test_docker_ingress.py overloads two replicas through a real nginx configured from these.
    """
    annotations = kit.one(kit.render(sets=sets), "Ingress")["metadata"]["annotations"]
    got = (
        annotations["nginx.ingress.kubernetes.io/proxy-next-upstream"],
        annotations["nginx.ingress.kubernetes.io/proxy-next-upstream-tries"],
    )
    assert got == expected


def test_notes_urls_reach_predict(kit: Any) -> None:
    """NOTES prints URLs that reach /predict: no doubled path, no `*` host, a warning for other paths."""
    notes = kit.install_notes(
        "--set", "ingress.enabled=true",
        "--set", "ingress.hosts[0].host=*.example.com",
        "--set", "ingress.hosts[0].paths[0].path=/predict",
        "--set", "ingress.hosts[0].paths[0].pathType=Exact",
        "--set", "ingress.hosts[1].host=api.example.com",
        "--set", "ingress.hosts[1].paths[0].path=/api",
        "--set", "ingress.hosts[1].paths[0].pathType=Prefix",
        "--set", "ingress.hosts[2].host=reviews.example.com",
        "--set", "ingress.hosts[2].paths[0].path=/",
        "--set", "ingress.hosts[2].paths[0].pathType=Prefix",
        "--set", "ingress.tls[0].secretName=tls",
        "--set", "ingress.tls[0].hosts[0]=reviews.example.com",
    )  # fmt: skip
    urls = re.findall(r"curl -s -X POST (\S+)", notes)
    assert f"http://{kit.fullname}.example.com/predict" in urls
    assert "https://reviews.example.com/predict" in urls
    assert "http://localhost:9696/predict" in urls
    assert not [u for u in urls if "*" in u or "/predict/predict" in u or "/api/predict" in u], urls
    assert 'Host "api.example.com", paths /api: these do not route /predict' in notes
    assert f"helm test {kit.release} -n {kit.namespace} --logs" in notes


def test_notes_for_httproute(kit: Any) -> None:
    """With the HTTPRoute on, NOTES prints the route's URL, including a prefix rewritten to /."""
    plain = kit.install_notes("--set", "httpRoute.enabled=true", "--set", "httpRoute.hostnames[0]=rs.example.com")
    assert "curl -s -X POST http://rs.example.com/predict" in plain
    rewritten = kit.install_notes("-f", kit.values_path("everything-on-values.yaml"))
    assert "curl -s -X POST http://reviewserve.example.com/sentiment/predict" in rewritten


# --------------------------------------------------------------- monitoring ---


def test_dashboard_uid_differs_per_release(kit: Any) -> None:
    """Two releases' dashboards get different uids (<= 40 chars, Grafana's limit); one release a stable one."""

    def dashboard(release: str, namespace: str) -> dict[str, Any]:
        res = kit.helm(
            "helm3", "template", release, str(kit.chart), "--namespace", namespace,
            "--set", "metrics.grafanaDashboard.enabled=true", "--show-only", "templates/grafana-dashboard.yaml",
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        cm = next(d for d in yaml.safe_load_all(res.stdout) if d)
        return json.loads(cm["data"]["reviewserve.json"])

    a, b, c = dashboard("a", "team"), dashboard("b", "team"), dashboard("a", "other")
    uids = {a["uid"], b["uid"], c["uid"]}
    assert len(uids) == 3, uids
    assert all(len(u) <= 40 and re.fullmatch(r"[a-zA-Z0-9_-]+", u) for u in uids)
    assert dashboard("a", "team")["uid"] == a["uid"]
    assert a["title"] != b["title"]
    assert a["panels"] == b["panels"] and a["panels"], "only uid and title differ"

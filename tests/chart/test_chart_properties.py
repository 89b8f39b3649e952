"""Properties of the rendered chart: availability, shutdown, security, config rollout, wiring."""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "reviewserve"
CI_VALUES = sorted(p.name for p in (CHART / "ci").glob("*.yaml"))
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
SELECTOR = {"app.kubernetes.io/name": "reviewserve", "app.kubernetes.io/instance": "rs"}
APP_ENV = {
    "PORT",
    "WORKERS",
    "MODEL_PATH",
    "MAX_BODY_BYTES",
    "MAX_REVIEWS",
    "MAX_REVIEW_CHARS",
    "LOG_LEVEL",
    "GRACEFUL_TIMEOUT",
    "SHUTDOWN_DELAY",
    "TIMEOUT",
    "KEEPALIVE",
    "THREADS",
    "PROMETHEUS_MULTIPROC_DIR",
    "MODEL_URI",
    "MODEL_SHA256",
    "MODEL_CACHE_DIR",
    "MODEL_FETCH_TIMEOUT",
    "MODEL_RETRY_MAX_SECONDS",
    "TRACK",
}
METRICS_DIR = "/var/run/reviewserve/metrics"


def pod_spec(kit: Any, docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The Deployment's pod spec."""
    return kit.deployment(docs)["spec"]["template"]["spec"]


# ----------------------------------------------------------------- replicas / HPA / PDB ---


def test_defaults_two_replicas_rolling_update(kit: Any) -> None:
    """Two replicas by default, rolled with maxUnavailable 0 / maxSurge 1."""
    dep = kit.deployment(kit.render())
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert dep["spec"]["selector"]["matchLabels"] == SELECTOR


@pytest.mark.parametrize("values", ["hpa-on-values.yaml", "everything-on-values.yaml"])
def test_hpa_on_deployment_omits_replicas(kit: Any, values: str) -> None:
    """With the HPA on, the Deployment has no replicas field and the HPA targets it."""
    docs = kit.render((values,))
    assert "replicas" not in kit.deployment(docs)["spec"]
    hpa = kit.one(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": kit.fullname,
    }
    cpu = [m for m in hpa["spec"]["metrics"] if m["resource"]["name"] == "cpu"]
    assert cpu and cpu[0]["resource"]["target"]["type"] == "Utilization"
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] > 0
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_hpa_values_are_wired(kit: Any) -> None:
    """HPA min/max/target/stabilization come from values."""
    hpa = kit.one(kit.render(("hpa-on-values.yaml",)), "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in hpa["spec"]["metrics"]}
    assert targets == {"cpu": 60, "memory": 80}
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 120


@pytest.mark.parametrize(
    ("sets", "expect_pdb"),
    [
        ((), True),
        (("replicaCount=1",), False),
        (("replicaCount=3",), True),
        (("replicaCount=3", "autoscaling.enabled=true", "autoscaling.minReplicas=1"), False),
        (("replicaCount=1", "autoscaling.enabled=true", "autoscaling.minReplicas=2"), True),
        (("podDisruptionBudget.enabled=false",), False),
    ],
)
def test_pdb_only_when_min_replicas_at_least_two(kit: Any, sets: tuple[str, ...], expect_pdb: bool) -> None:
    """A PDB is rendered exactly when the minimum replica count is >= 2 (and it is enabled)."""
    pdbs = kit.by_kind(kit.render(sets=sets), "PodDisruptionBudget")
    assert bool(pdbs) is expect_pdb
    if pdbs:
        assert pdbs[0]["spec"]["selector"]["matchLabels"] == SELECTOR
        assert ("maxUnavailable" in pdbs[0]["spec"]) != ("minAvailable" in pdbs[0]["spec"])


# ------------------------------------------------------------------------ shutdown ---


@pytest.mark.parametrize("values", CI_VALUES)
def test_grace_period_exceeds_prestop_delay_and_drain(kit: Any, values: str) -> None:
    """terminationGracePeriodSeconds > preStop sleep + SHUTDOWN_DELAY + GRACEFUL_TIMEOUT."""
    docs = kit.render((values,))
    spec = pod_spec(kit, docs)
    container = spec["containers"][0]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "/bin/sleep"
    pre_stop = int(command[1])
    config = kit.one(docs, "ConfigMap")["data"]
    total = pre_stop + int(config["SHUTDOWN_DELAY"]) + int(config["GRACEFUL_TIMEOUT"])
    assert spec["terminationGracePeriodSeconds"] > total


def test_prestop_can_be_disabled(kit: Any) -> None:
    """preStopSleepSeconds=0 drops the hook (and the grace rule still holds)."""
    container = kit.container(kit.render(sets=("lifecycle.preStopSleepSeconds=0",)))
    assert "lifecycle" not in container


# ------------------------------------------------------------------------ security ---


def _restricted_violations(spec: dict[str, Any]) -> list[str]:
    """Violations of the Kubernetes "restricted" Pod Security Standard (v1.29+) in a pod spec."""
    out: list[str] = []
    psc = spec.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            out.append(key)
    allowed_volumes = {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
    for vol in spec.get("volumes", []):
        kinds = set(vol) - {"name"}
        if not kinds <= allowed_volumes:
            out.append(f"volume {vol['name']} type {kinds}")
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        sc = c.get("securityContext", {})
        name = c["name"]
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation must be false")
        if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            out.append(f"{name}: runAsNonRoot must be true")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            out.append(f"{name}: runAsUser 0")
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile {seccomp}")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            out.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: adds {caps['add']}")
        for port in c.get("ports", []):
            if port.get("hostPort"):
                out.append(f"{name}: hostPort")
    return out


def test_restricted_check_detects_violations() -> None:
    """The PSS checker itself flags an unrestricted pod (so the next test can fail)."""
    spec = {"hostNetwork": True, "containers": [{"name": "c", "securityContext": {"privileged": True}}]}
    assert len(_restricted_violations(spec)) >= 5


@pytest.mark.parametrize("values", CI_VALUES)
def test_pods_meet_restricted_pss(kit: Any, values: str) -> None:
    """The app pods and the helm test pod meet the restricted Pod Security Standard."""
    docs = kit.render((values,))
    specs = [pod_spec(kit, docs)] + [p["spec"] for p in kit.by_kind(docs, "Pod")]
    for spec in specs:
        assert _restricted_violations(spec) == []
    container = specs[0]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["runAsGroup"] == 10001


def test_service_account_token_not_mounted(kit: Any) -> None:
    """ServiceAccount and pod both turn token automount off."""
    docs = kit.render()
    sa = kit.one(docs, "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    spec = pod_spec(kit, docs)
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == sa["metadata"]["name"]
    minimal = pod_spec(kit, kit.render(("minimal-values.yaml",)))
    assert minimal["serviceAccountName"] == "default"
    assert minimal["automountServiceAccountToken"] is False


# ---------------------------------------------------------------------- volumes ---


@pytest.mark.parametrize("values", CI_VALUES)
def test_writable_dirs_are_memory_emptydirs(kit: Any, values: str) -> None:
    """/tmp, the metrics dir and the model cache are emptyDirs (Memory, with size limits); nothing else is writable."""
    docs = kit.render((values,))
    spec = pod_spec(kit, docs)
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"] if not m.get("readOnly")}
    assert set(mounts) == {"/tmp", METRICS_DIR, "/var/cache/reviewserve/models"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for name in mounts.values():
        empty = volumes[name]["emptyDir"]
        assert empty["medium"] == "Memory"
        assert empty["sizeLimit"]
    assert kit.one(docs, "ConfigMap")["data"]["PROMETHEUS_MULTIPROC_DIR"] == METRICS_DIR


# ---------------------------------------------------------------- env / config ---


def test_config_env_complete_and_wired(kit: Any) -> None:
    """Every app setting is in the ConfigMap, which the container loads with envFrom."""
    docs = kit.render()
    data = kit.one(docs, "ConfigMap")["data"]
    assert set(data) >= APP_ENV
    assert all(isinstance(v, str) for v in data.values())
    assert data["PORT"] == "9696"
    assert data["MAX_BODY_BYTES"] == "1048576"
    assert data["MODEL_PATH"] == "/app/models/review-sentiment/1"
    container = kit.container(docs)
    assert container["envFrom"] == [{"configMapRef": {"name": kit.fullname}}]


def test_explicit_workers_override(kit: Any) -> None:
    """config.workers set: WORKERS is a fixed value in the ConfigMap, not from the downward API."""
    docs = kit.render(("everything-on-values.yaml",))
    assert "WORKERS" not in {e["name"] for e in kit.container(docs).get("env", [])}
    assert kit.one(docs, "ConfigMap")["data"]["WORKERS"] == "2"


def _checksum(kit: Any, sets: tuple[str, ...]) -> str:
    """The checksum/config pod annotation for a render."""
    return kit.deployment(kit.render(sets=sets))["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


@pytest.mark.parametrize(
    "change",
    ["config.logLevel=DEBUG", "config.maxReviews=10", "config.gracefulTimeout=10", "config.workers=3"],
)
def test_config_change_rolls_pods(kit: Any, change: str) -> None:
    """Changing an app setting changes the checksum annotation (so pods roll)."""
    assert _checksum(kit, (change,)) != _checksum(kit, ())


def test_unrelated_change_keeps_checksum(kit: Any) -> None:
    """Scaling does not change the config checksum."""
    assert _checksum(kit, ("replicaCount=4",)) == _checksum(kit, ())


# ------------------------------------------------------------------ probes / ports ---


@pytest.mark.parametrize("values", CI_VALUES)
def test_probes_on_named_port(kit: Any, values: str) -> None:
    """readiness on /readyz, startup+liveness on /healthz (a refused model keeps the pod up and unready,
    issue 16 item 9), all on the named port health (HEALTH_PORT: answered by the gunicorn master, whatever
    the request workers on port http are doing)."""
    docs = kit.render((values,))
    c = kit.container(docs)
    data = kit.one(docs, "ConfigMap")["data"]
    assert c["ports"] == [
        {"name": "http", "containerPort": int(data["PORT"]), "protocol": "TCP"},
        {"name": "health", "containerPort": int(data["HEALTH_PORT"]), "protocol": "TCP"},
    ]
    assert data["HEALTH_PORT"] != data["PORT"]
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    # Startup gets a generous window for loading the model.
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 60


def test_port_change_follows_through(kit: Any) -> None:
    """config.port moves PORT and the container port together; the Service targets the name."""
    docs = kit.render(sets=("config.port=8080",))
    assert kit.one(docs, "ConfigMap")["data"]["PORT"] == "8080"
    assert kit.container(docs)["ports"][0]["containerPort"] == 8080
    svc = kit.one(docs, "Service")
    assert svc["spec"]["ports"][0]["targetPort"] == "http"


def test_service_clusterip_named_http(kit: Any) -> None:
    """ClusterIP Service, port 9696 named http, selecting the app pods."""
    svc = kit.one(kit.render(), "Service")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"][0]["name"] == "http"
    assert svc["spec"]["ports"][0]["port"] == 9696
    assert svc["spec"]["selector"] == SELECTOR


# ------------------------------------------------------------------------ image ---


def test_image_tag_defaults_to_app_version(kit: Any) -> None:
    """image.tag empty -> appVersion; pullPolicy IfNotPresent."""
    c = kit.container(kit.render())
    assert c["image"] == f"reviewserve:{APP_VERSION}"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert kit.container(kit.render(sets=("image.tag=abc",)))["image"] == "reviewserve:abc"


def test_image_digest_pins(kit: Any) -> None:
    """image.digest is appended."""
    c = kit.container(kit.render(("everything-on-values.yaml",)))
    assert c["image"].startswith("registry.example.com/reviewserve:1.0.0@sha256:")


# ------------------------------------------------------------------ scheduling ---


def test_topology_spread_selects_own_pods(kit: Any) -> None:
    """Each spread constraint gets a labelSelector matching this release's pods."""
    constraints = pod_spec(kit, kit.render())["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in constraints} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    for c in constraints:
        assert c["labelSelector"] == {"matchLabels": SELECTOR}
    assert "topologySpreadConstraints" not in pod_spec(kit, kit.render(("minimal-values.yaml",)))


# ---------------------------------------------------------------------- ingress ---


def test_ingress_default_any_host_nginx(kit: Any) -> None:
    """Ingress turned on: class nginx, no host (so curl localhost works through a local controller), port
    http, the API paths only."""
    ing = kit.one(kit.render(sets=("ingress.enabled=true",)), "Ingress")
    assert ing["spec"]["ingressClassName"] == "nginx"
    rule = ing["spec"]["rules"][0]
    assert "host" not in rule
    paths = rule["http"]["paths"]
    assert [(p["path"], p["pathType"]) for p in paths] == [("/predict", "Exact"), ("/v2", "Prefix")]
    for path in paths:
        assert path["backend"]["service"] == {"name": kit.fullname, "port": {"name": "http"}}


def test_ingress_host_tls_annotations(kit: Any) -> None:
    """Hosts, TLS and annotations are configurable."""
    ing = kit.one(kit.render(("everything-on-values.yaml",)), "Ingress")
    assert ing["spec"]["rules"][0]["host"] == "reviewserve.example.com"
    assert ing["spec"]["tls"] == [{"secretName": "reviewserve-tls", "hosts": ["reviewserve.example.com"]}]
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "1m"


# ---------------------------------------------------------------- helm test pod ---


def test_helm_test_pod_posts_review_to_service(kit: Any) -> None:
    """The test hook POSTs the seed review to the Service's /predict and is not a Service backend."""
    docs = kit.render()
    pod = kit.one(docs, "Pod", f"{kit.fullname}-test-predict")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    labels = pod["metadata"]["labels"]
    svc = kit.one(docs, "Service")
    assert not all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "Service would route to it"
    c = pod["spec"]["containers"][0]
    assert c["image"] == kit.container(docs)["image"]
    assert c["command"][:2] == ["python3", "-c"]
    assert c["command"][3] == f"http://{kit.fullname}:9696/predict"
    assert c["command"][4] == "This Chatbot is amazing"
    compile(c["command"][2], "test-predict", "exec")
    assert pod["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize("helm", ["helm3", "helm4"])
def test_helm_test_pod_is_kept_for_its_logs(kit: Any, helm: str) -> None:
    """The test pod is replaced by the next run, never deleted on success (helm test --logs, helm#9098)."""
    pod = kit.one(kit.render(helm=helm), "Pod", f"{kit.fullname}-test-predict")
    policies = pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"].split(",")
    assert "hook-succeeded" not in policies
    assert "before-hook-creation" in policies


def _test_pod_command(kit: Any) -> list[str]:
    pod = kit.one(kit.render(), "Pod", f"{kit.fullname}-test-predict")
    return pod["spec"]["containers"][0]["command"]


def test_helm_test_script_passes_on_a_real_prediction(kit: Any, server_factory: Any) -> None:
    """The test pod's script, run against a real gunicorn, passes and logs the label and probability."""
    server = server_factory(workers=1)
    command = _test_pod_command(kit)
    res = subprocess.run(
        [sys.executable, "-c", command[2], f"{server.url}/predict", command[4], "2", "0.5"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"OK attempt 1: prediction=positive probability=0\.\d+", res.stdout), res.stdout


class _Canned(http.server.BaseHTTPRequestHandler):
    """Answers every POST with the class's canned status and body."""

    status = 200
    body = b"{}"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.mark.parametrize(
    ("status", "answer", "problem"),
    [
        (200, {"prediction": "maybe", "probability": 0.5}, "prediction 'maybe' is not positive or negative"),
        (200, {"prediction": "positive", "probability": 1.5}, "probability 1.5 is outside [0, 1]"),
        (200, {"prediction": "negative", "probability": -0.1}, "probability -0.1 is outside [0, 1]"),
        (200, {"prediction": "positive"}, "probability None is not a number"),
        (200, {"prediction": "positive", "probability": "0.9"}, "probability '0.9' is not a number"),
        (200, {"error": {"code": "x"}}, "prediction None is not positive or negative"),
        (200, [], "not a JSON object"),
    ],
)
def test_helm_test_script_fails_on_a_wrong_answer(kit: Any, status: int, answer: Any, problem: str) -> None:
    """The test pod fails unless the label is positive/negative and the probability is in [0, 1]."""
    handler = type("Handler", (_Canned,), {"status": status, "body": json.dumps(answer).encode()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        command = _test_pod_command(kit)
        url = f"http://127.0.0.1:{server.server_address[1]}/predict"
        res = subprocess.run(
            [sys.executable, "-c", command[2], url, command[4], "2", "0"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert res.returncode == 1, res.stdout
    assert problem in res.stdout and "FAIL: POST" in res.stdout, res.stdout


# --------------------------------------------------------------- network policy ---


def test_network_policy_allows_ingress_controller_and_test_pod(kit: Any) -> None:
    """The app policy admits the ingress controller and the test pod; the test pod may call the app."""
    docs = kit.render(("everything-on-values.yaml",))
    app = kit.one(docs, "NetworkPolicy")
    assert app["spec"]["podSelector"]["matchLabels"] == SELECTOR
    peers = app["spec"]["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}} in peers
    test_pod = kit.one(docs, "Pod", f"{kit.fullname}-test-predict")
    selectors = [p["podSelector"]["matchLabels"] for p in peers if "podSelector" in p]
    assert any(all(test_pod["metadata"]["labels"].get(k) == v for k, v in s.items()) for s in selectors)
    test_policy = kit.one(docs, "NetworkPolicy", f"{kit.fullname}-test")
    sel = test_policy["spec"]["podSelector"]["matchLabels"]
    assert all(test_pod["metadata"]["labels"].get(k) == v for k, v in sel.items())
    assert test_policy["spec"]["egress"][0]["to"][0]["podSelector"]["matchLabels"] == SELECTOR


# ------------------------------------------------------------------ monitoring ---


def test_service_monitor_scrapes_metrics(kit: Any) -> None:
    """The ServiceMonitor scrapes /metrics on the named port of this release's Service."""
    docs = kit.render(("everything-on-values.yaml",))
    sm = kit.one(docs, "ServiceMonitor")
    assert sm["spec"]["selector"]["matchLabels"] == SELECTOR
    assert sm["spec"]["endpoints"][0]["port"] == "http"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    svc = kit.one(docs, "Service")
    assert all(svc["metadata"]["labels"].get(k) == v for k, v in SELECTOR.items())


def test_grafana_dashboard_configmap(kit: Any) -> None:
    """The dashboard ConfigMap has the sidecar label and valid dashboard JSON using the app's metrics."""
    cm = kit.one(kit.render(("everything-on-values.yaml",)), "ConfigMap", f"{kit.fullname}-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dash = json.loads(cm["data"]["reviewserve.json"])
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    assert "flask_http_request_total" in exprs
    assert "flask_http_request_duration_seconds_bucket" in exprs
    assert not kit.by_kind(kit.render(), "ConfigMap")[1:], "dashboard must be opt-in"


def _leaf_keys(prefix: str, value: Any) -> list[str]:
    """Dotted paths of the leaves of a values tree."""
    if isinstance(value, dict) and value:
        return [k for key, sub in value.items() for k in _leaf_keys(f"{prefix}.{key}" if prefix else key, sub)]
    return [prefix]


def test_readme_documents_every_value() -> None:
    """The chart README's values table names every value (or the object holding it)."""
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, flags=re.M))
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = [
        key for key in _leaf_keys("", values) if not any(key == d or key.startswith(f"{d}.") for d in documented)
    ]
    assert missing == []
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(schema["properties"]) - {"global"} == set(values)

"""The kind workflow's scripts, run for real with recording stand-ins for kind, kubectl and docker.

There is no cluster here (and on CI), so `k8s/scripts/kind-up.sh` and `kind-deploy.sh` run with
`kind`, `docker` and `kubectl` replaced by small recorders on PATH: what is checked is what the
scripts ask them to do. The kubectl recorder answers label queries from the chart really rendered for
the same release and namespace, so a selector that would not find the release's Deployment on a
cluster finds nothing here either. For kind-deploy.sh helm is the real one (`helm template` stands in
for `helm upgrade --install`); for kind-up.sh, which installs NGINX Gateway Fabric from its OCI
registry (not reachable here), helm is a recorder too.

The kind cluster's traffic path is checked across the files that make it: kind-up.sh's NodePort for
the NGINX Gateway Fabric data plane, k8s/kind-config.yaml's port mapping to 127.0.0.1:80, the Gateway
of k8s/gateway.yaml and the HTTPRoute that k8s/values-kind.yaml renders (both validated against the
Gateway API CRD schemas).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.systools import missing_tool

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "k8s" / "scripts"
SHELL_SCRIPTS = [*sorted(SCRIPTS.glob("*.sh")), *sorted((REPO / ".ci").iterdir())]
NODE_IMAGE = re.compile(r"^kindest/node:v(\d+\.\d+\.\d+)@sha256:[0-9a-f]{64}$")
GATEWAY_MANIFEST = REPO / "k8s" / "gateway.yaml"
NGF_CHART = "oci://ghcr.io/nginx/charts/nginx-gateway-fabric"
SEMVER = re.compile(r"\d+\.\d+\.\d+")
# The Gateway API release bundle of the standard channel, at an exact version.
GATEWAY_API_BUNDLE = re.compile(
    r"https://github\.com/kubernetes-sigs/gateway-api/releases/download/(v\d+\.\d+\.\d+)/standard-install\.yaml"
)
METRICS = re.compile(r"kubernetes-sigs/metrics-server/releases/download/(v\d+\.\d+\.\d+)/components\.yaml")
# NGINX Gateway Fabric 2.7 supports Kubernetes 1.32+ (its technical specifications).
NGF_MIN_KUBERNETES = (1, 32)

RECORDER = """#!/bin/sh
# Records its arguments (one JSON line per call) and answers what the test configured.
exec "{python}" "{here}/recorder.py" "$(basename "$0")" "$@"
"""

RECORDER_PY = r"""
import json, os, sys
tool, args = sys.argv[1], sys.argv[2:]
with open(os.environ["RECORD_LOG"], "a") as log:
    log.write(json.dumps([tool, *args]) + "\n")
if tool == "kind":
    if "--config" in args and os.environ.get("KEEP_KIND_CONFIG"):
        with open(args[args.index("--config") + 1]) as src, open(os.environ["KEEP_KIND_CONFIG"], "w") as dst:
            dst.write(src.read())
    if args[:1] == ["version"]:
        print(os.environ.get("FAKE_KIND_VERSION", "kind v0.30.0 go1.24.6 linux/amd64"))
    elif args[:2] == ["get", "clusters"]:
        print(os.environ.get("FAKE_KIND_CLUSTERS", ""))
elif tool == "docker":
    if args[:2] == ["buildx", "version"]:
        sys.exit(0 if os.environ.get("FAKE_BUILDX") == "1" else 1)
    if args[:1] == ["version"]:
        print(os.environ.get("FAKE_DOCKER_ARCH", "amd64"))
    if args[:2] == ["save", "--help"]:
        # Docker >= 28 has `docker save --platform`.
        platform = os.environ.get("FAKE_SAVE_PLATFORM") == "1"
        print("  -o, --output string" + ("\n      --platform stringArray" if platform else ""))
    elif args and args[0] == "save":
        with open(args[args.index("-o") + 1], "wb") as out:
            out.write(b"image archive")
elif tool == "kubectl" and "get" in args and "-l" in args:
    selector = dict(kv.split("=", 1) for kv in args[args.index("-l") + 1].split(","))
    for dep in json.load(open(os.environ["RENDERED_DEPLOYMENTS"])):
        if all(dep["labels"].get(k) == v for k, v in selector.items()):
            print("deployment.apps/" + dep["name"])
elif tool == "helm" and os.environ.get("REAL_HELM"):
    # helm upgrade --install -> helm template with the same release, chart, namespace and values.
    real = os.environ["REAL_HELM"]
    keep = [a for a in args if a not in ("upgrade", "--install", "--create-namespace", "--wait")]
    out, skip = [], False
    for i, a in enumerate(keep):
        if skip:
            skip = False
            continue
        if a in ("--kube-context", "--timeout"):
            skip = True
            continue
        out.append(a)
    os.execv(real, [real, "template", *out])
"""


def _recorders(tmp_path: Path, tools: tuple[str, ...]) -> Path:
    """A bin directory with recorders for ``tools``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "recorder.py").write_text(RECORDER_PY)
    for tool in tools:
        path = bin_dir / tool
        path.write_text(RECORDER.format(python=sys.executable, here=bin_dir))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def _run_deploy(
    kit: Any, tmp_path: Path, release: str, namespace: str, buildx: bool, **extra_env: str
) -> list[list[str]]:
    """Run kind-deploy.sh for ``release``/``namespace`` with recorders; return the recorded calls."""
    docs = kit.helm(
        "helm3", "template", release, str(kit.chart), "-n", namespace, "-f", str(REPO / "k8s/values-kind.yaml")
    )
    assert docs.returncode == 0, docs.stderr
    rendered = [
        {"name": d["metadata"]["name"], "labels": d["metadata"]["labels"]}
        for d in yaml.safe_load_all(docs.stdout)
        if d and d["kind"] == "Deployment"
    ]
    (tmp_path / "deployments.json").write_text(json.dumps(rendered))
    bin_dir = _recorders(tmp_path, ("docker", "kind", "kubectl", "helm"))
    log = tmp_path / "calls.jsonl"
    env = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path),
        "RECORD_LOG": str(log),
        "RENDERED_DEPLOYMENTS": str(tmp_path / "deployments.json"),
        "REAL_HELM": str(kit.helms["helm3"]),
        "FAKE_BUILDX": "1" if buildx else "0",
        "RELEASE": release,
        "NAMESPACE": namespace,
        "IMAGE_TAG": "kind-test",
        "TOOLS_DIR": str(tmp_path / "no-tools"),  # the user's own helm, as on a laptop
        **extra_env,
    }
    res = subprocess.run(
        ["bash", str(SCRIPTS / "kind-deploy.sh")], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr
    (tmp_path / "helm-stdout.yaml").write_text(res.stdout)  # the recorder's helm renders the release here
    return _calls(log)


def _run_up(
    tmp_path: Path, clusters: str = "", kind_version: str | None = None, **extra_env: str
) -> tuple[int, str, list[list[str]]]:
    """Run kind-up.sh with recorders (helm too); return its exit code, stderr and the recorded calls."""
    bin_dir = _recorders(tmp_path, ("docker", "kind", "kubectl", "helm"))
    log = tmp_path / "calls.jsonl"
    log.touch()
    env = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path),
        "RECORD_LOG": str(log),
        "FAKE_KIND_CLUSTERS": clusters,
        "TOOLS_DIR": str(tmp_path / "no-tools"),  # the user's own helm (here: the recorder)
        **extra_env,
    }
    if kind_version:
        env["FAKE_KIND_VERSION"] = kind_version
    res = subprocess.run(
        ["bash", str(SCRIPTS / "kind-up.sh")], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    return res.returncode, res.stderr, _calls(log)


def _gateway() -> dict[str, Any]:
    """The kind cluster's Gateway (k8s/gateway.yaml)."""
    docs = [d for d in yaml.safe_load_all(GATEWAY_MANIFEST.read_text()) if d]
    assert [d["kind"] for d in docs] == ["Gateway"]
    return docs[0]


def _index(calls: list[list[str]], what: str, match: Any) -> int:
    """Position of the one call that ``match`` accepts."""
    found = [i for i, c in enumerate(calls) if match(c)]
    assert len(found) == 1, f"{what}: expected one call, found {[calls[i] for i in found]} in {calls}"
    return found[0]


def _opt(call: list[str], flag: str) -> str:
    """The value after ``flag`` in a recorded command line."""
    return call[call.index(flag) + 1]


@pytest.mark.parametrize("existing", [False, True], ids=["new-cluster", "existing-cluster"])
def test_kind_up_installs_pinned_gateway_stack_in_order(tmp_path: Path, existing: bool) -> None:
    """kind-up.sh: pinned Gateway API CRDs (standard channel), then the pinned NGINX Gateway Fabric, then
    the Gateway of k8s/gateway.yaml, each waited for; metrics-server stays; ingress-nginx is gone.

    Re-running it against an existing cluster installs the same things again (idempotent commands).
    """
    code, stderr, calls = _run_up(tmp_path, clusters="reviewserve" if existing else "other")
    assert code == 0, stderr
    creates = [c for c in calls if c[:3] == ["kind", "create", "cluster"]]
    if existing:
        assert creates == []
    else:
        assert len(creates) == 1 and _opt(creates[0], "--config") == str(REPO / "k8s" / "kind-config.yaml")
    assert "ingress-nginx" not in json.dumps(calls)
    kubectl = [c for c in calls if c[0] == "kubectl"]
    assert kubectl and all(_opt(c, "--context") == "kind-reviewserve" for c in kubectl)
    gateway = _gateway()
    gw_name, gw_ns = gateway["metadata"]["name"], gateway["metadata"]["namespace"]

    crds = _index(
        calls, "Gateway API CRDs",
        lambda c: c[0] == "kubectl" and "apply" in c and GATEWAY_API_BUNDLE.search(" ".join(c)) is not None,
    )  # fmt: skip
    assert "--server-side" in calls[crds], "the Gateway API install guide applies the bundle server-side"
    established = _index(calls, "CRDs established", lambda c: c[0] == "kubectl" and "--for=condition=Established" in c)
    assert {"crd/gateways.gateway.networking.k8s.io", "crd/httproutes.gateway.networking.k8s.io"} <= set(
        calls[established]
    )
    ngf = _index(calls, "NGF chart", lambda c: c[0] == "helm" and NGF_CHART in c)
    helm = calls[ngf]
    assert helm[1:4] == ["upgrade", "--install", "ngf"], helm
    assert SEMVER.fullmatch(_opt(helm, "--version")), f"NGF chart pinned to an exact version: {helm}"
    assert _opt(helm, "--kube-context") == "kind-reviewserve"
    assert _opt(helm, "--namespace") == gw_ns  # the Gateway lives beside NGF (its data plane too)
    control_plane = _index(
        calls, "NGF control plane ready",
        lambda c: c[0] == "kubectl" and "wait" in c and "deployment/ngf-nginx-gateway-fabric" in c,
    )  # fmt: skip
    assert "--for=condition=Available" in calls[control_plane] and _opt(calls[control_plane], "-n") == gw_ns
    applied = _index(
        calls, "Gateway applied", lambda c: c[0] == "kubectl" and "apply" in c and str(GATEWAY_MANIFEST) in c
    )
    programmed = _index(
        calls, "Gateway programmed",
        lambda c: c[0] == "kubectl" and "--for=condition=Programmed" in c and f"gateway/{gw_name}" in c,
    )  # fmt: skip
    assert _opt(calls[programmed], "-n") == gw_ns
    data_plane = _index(
        calls, "Gateway data plane rolled out",
        lambda c: c[0] == "kubectl" and "rollout" in c and f"deployment/{gw_name}-nginx" in c,
    )  # fmt: skip
    assert crds < established < ngf < control_plane < applied < programmed < data_plane
    metrics = _index(
        calls, "metrics-server", lambda c: c[0] == "kubectl" and "apply" in c and METRICS.search(" ".join(c))
    )
    assert any("deployment/metrics-server" in c and "rollout" in c for c in calls[metrics:])


def test_kind_up_refuses_an_old_kind_before_touching_anything(tmp_path: Path) -> None:
    """kind older than the node image's release: an error, and no cluster, CRD or chart is touched."""
    code, stderr, calls = _run_up(tmp_path, kind_version="kind v0.29.0 go1.24.2 linux/amd64")
    assert code != 0 and "older than 0.30.0" in stderr
    assert [c for c in calls if c[0] != "kind" or c[1] not in ("version",)] == []


def test_kind_host_port_reaches_the_gateway_listener(tmp_path: Path) -> None:
    """http://localhost/ (the README's curl) lands on the Gateway listener the HTTPRoute attaches to:
    host 127.0.0.1:80 -> kind node port (kind-config.yaml) -> NGF data plane NodePort (kind-up.sh) ->
    listener port of k8s/gateway.yaml, and that listener is the one values-kind.yaml names.
    """
    code, stderr, calls = _run_up(tmp_path)
    assert code == 0, stderr
    helm = next(c for c in calls if c[0] == "helm" and NGF_CHART in c)
    sets = [helm[i + 1] for i, a in enumerate(helm) if a == "--set"]
    assert "nginx.service.type=NodePort" in sets
    key, _, raw = _opt(helm, "--set-json").partition("=")
    assert key == "nginx.service.nodePorts"
    node_ports = json.loads(raw)
    assert len(node_ports) == 1 and 30000 <= node_ports[0]["port"] <= 32767, node_ports
    cfg = yaml.safe_load((REPO / "k8s" / "kind-config.yaml").read_text())
    mappings = [m for node in cfg["nodes"] for m in node.get("extraPortMappings", [])]
    published = [m for m in mappings if m["containerPort"] == node_ports[0]["port"]]
    assert published == [
        {"containerPort": node_ports[0]["port"], "hostPort": 80, "listenAddress": "127.0.0.1", "protocol": "TCP"}
    ]
    route = yaml.safe_load((REPO / "k8s" / "values-kind.yaml").read_text())["httpRoute"]
    listeners = {ls["name"]: ls for ls in _gateway()["spec"]["listeners"]}
    listener = listeners[route["parentRefs"][0]["sectionName"]]
    assert listener["port"] == node_ports[0]["listenerPort"] and listener["protocol"] == "HTTP"
    assert "hostname" not in listener, "a listener hostname would not accept Host: localhost"


def test_kind_gateway_and_route_match_gateway_api_crd_schemas(kit: Any) -> None:
    """k8s/gateway.yaml and the HTTPRoute rendered with k8s/values-kind.yaml (Helm 3 and 4) validate
    against the Gateway API CRD schemas; the validator is live for the Gateway too."""
    routes = [
        kit.one(kit.render((str(REPO / "k8s" / "values-kind.yaml"),), helm=helm), "HTTPRoute")
        for helm in ("helm3", "helm4")
    ]
    code, results = kit.validate_crds([_gateway(), *routes])
    assert code == 0 and [r["ok"] for r in results] == [True, True, True], results
    bad = json.loads(json.dumps(_gateway()))
    bad["spec"]["listeners"][0]["allowedRoutes"]["namespaces"]["from"] = "Any"
    code, results = kit.validate_crds([bad])
    assert code == 1 and "allowedRoutes/namespaces/from" in results[0]["error"], results


@pytest.mark.parametrize(("release", "namespace"), [("reviewserve", "reviewserve"), ("demo", "shop")])
def test_kind_route_attaches_to_the_kind_gateway(kit: Any, release: str, namespace: str) -> None:
    """With k8s/values-kind.yaml the HTTPRoute names the Gateway of k8s/gateway.yaml by name, namespace
    and listener, that listener admits routes from the release's namespace, the route sends the API paths
    (/predict, /v2) to the release's Service, and no Ingress is rendered (kind runs no Ingress controller).
    """
    res = kit.helm(
        "helm4", "template", release, str(kit.chart), "--namespace", namespace,
        "-f", str(REPO / "k8s" / "values-kind.yaml"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    docs = [d for d in yaml.safe_load_all(res.stdout) if d]
    assert not [d for d in docs if d["kind"] == "Ingress"]
    [route] = [d for d in docs if d["kind"] == "HTTPRoute"]
    [service] = [d for d in docs if d["kind"] == "Service"]
    gateway = _gateway()
    [ref] = route["spec"]["parentRefs"]
    assert (ref["name"], ref["namespace"]) == (gateway["metadata"]["name"], gateway["metadata"]["namespace"])
    assert ref.get("group", "gateway.networking.k8s.io") == "gateway.networking.k8s.io"
    assert ref.get("kind", "Gateway") == "Gateway"
    listener = next(ls for ls in gateway["spec"]["listeners"] if ls["name"] == ref["sectionName"])
    allowed = listener.get("allowedRoutes", {}).get("namespaces", {}).get("from", "Same")
    assert allowed == "All" or (allowed == "Same" and namespace == gateway["metadata"]["namespace"]), allowed
    assert gateway["spec"]["gatewayClassName"] == "nginx"  # the GatewayClass NGF's chart creates by default
    assert not route["spec"].get("hostnames"), "any host name, so http://localhost/ matches"
    for rule in route["spec"]["rules"]:
        # The API paths only (issue 16 item 8): /metrics and /openapi.json stay on the Service.
        assert rule["matches"] == [
            {"path": {"type": "Exact", "value": "/predict"}},
            {"path": {"type": "PathPrefix", "value": "/v2"}},
        ] and "filters" not in rule
        assert rule["backendRefs"] == [
            {"name": service["metadata"]["name"], "port": service["spec"]["ports"][0]["port"], "weight": 1}
        ]


def test_kind_notes_print_the_localhost_url(kit: Any) -> None:
    """The install notes with k8s/values-kind.yaml print the README's curl to http://localhost/predict."""
    notes = kit.install_notes("-f", str(REPO / "k8s" / "values-kind.yaml"))
    assert "Through the Gateway API HTTPRoute (parents: nginx-gateway/gateway)" in notes
    assert re.search(r"^  curl -s -X POST http://localhost/predict ", notes, flags=re.M), notes
    assert "Through the Ingress" not in notes and "<gateway-address>" not in notes


def test_readme_names_the_versions_kind_up_installs(tmp_path: Path) -> None:
    """The README's kind quickstart names the NGF, Gateway API and metrics-server versions kind-up.sh pins."""
    code, stderr, calls = _run_up(tmp_path)
    assert code == 0, stderr
    helm = next(c for c in calls if c[0] == "helm" and NGF_CHART in c)
    flat = " ".join(" ".join(c) for c in calls)
    gateway_api = GATEWAY_API_BUNDLE.search(flat)
    metrics = METRICS.search(flat)
    assert gateway_api and metrics
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Quickstart on kind", 1)[1].split("\n### ", 1)[0]
    commands = section.split("```bash", 1)[1].split("```", 1)[0]
    kind_up = next(line for line in commands.splitlines() if line.startswith("make kind-up"))
    assert f"NGINX Gateway Fabric {_opt(helm, '--version')}" in kind_up
    assert f"Gateway API {gateway_api.group(1)}" in kind_up
    assert f"metrics-server {metrics.group(1)}" in kind_up
    assert "ingress" not in kind_up.lower()


@pytest.mark.parametrize(("release", "namespace"), [("demo", "shop"), ("reviewserve", "reviewserve"), ("rs", "ml")])
def test_kind_deploy_any_release_and_namespace(kit: Any, tmp_path: Path, release: str, namespace: str) -> None:
    """kind-deploy.sh installs the given release in the given namespace and waits on its own Deployment."""
    calls = _run_deploy(kit, tmp_path, release, namespace, buildx=True)
    helm = [c for c in calls if c[0] == "helm"]
    assert len(helm) == 1 and helm[0][1:4] == ["upgrade", "--install", release]
    assert helm[0][helm[0].index("--namespace") + 1] == namespace
    rollouts = [c for c in calls if c[0] == "kubectl" and "rollout" in c]
    expected = release if "reviewserve" in release else f"{release}-reviewserve"
    assert [r[r.index("status") + 1] for r in rollouts] == [f"deployment.apps/{expected}"]
    assert all(r[r.index("-n") + 1] == namespace for r in rollouts)


@pytest.mark.parametrize("buildx", [True, False])
def test_kind_deploy_loads_an_image_without_attestation(kit: Any, tmp_path: Path, buildx: bool) -> None:
    """Built without provenance attestation (buildx) and loaded as an archive: never `kind load docker-image`."""
    calls = _run_deploy(kit, tmp_path, "demo", "shop", buildx=buildx)
    builds = [c for c in calls if c[0] == "docker" and "build" in c]
    assert len(builds) == 1
    if buildx:
        assert builds[0][1:3] == ["buildx", "build"]
        assert "--provenance=false" in builds[0] and "--load" in builds[0]
    else:
        assert builds[0][1] == "build" and "--provenance=false" not in builds[0]
    save = next(c for c in calls if c[0] == "docker" and c[1] == "save" and "--help" not in c)
    archive = save[save.index("-o") + 1]
    assert save[-1] == "reviewserve:kind-test"
    loads = [c for c in calls if c[0] == "kind" and "load" in c]
    assert loads == [["kind", "load", "image-archive", archive, "--name", "reviewserve"]]


def _lib_helm(tools_dir: Path, path: str, helm_env: str | None = None) -> str:
    """The HELM that k8s/scripts/lib.sh picks."""
    env = {"PATH": path, "TOOLS_DIR": str(tools_dir), "HOME": str(tools_dir)}
    if helm_env:
        env["HELM"] = helm_env
    res = subprocess.run(
        ["bash", "-c", f'source "{SCRIPTS / "lib.sh"}"; printf %s "$HELM"'],
        capture_output=True, text=True, env=env, timeout=30, check=True,
    )  # fmt: skip
    return res.stdout


def test_bundled_helm_used_only_when_it_runs(kit: Any, tmp_path: Path) -> None:
    """A .tools helm built for another platform ("exec format error") is passed over for the user's helm."""
    foreign = tmp_path / "foreign"
    (foreign / "bin").mkdir(parents=True)
    # An ELF header for AArch64 (e_machine 183): exactly what x86-64 `make tools` output is on a Mac/arm64.
    elf = b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + b"\x02\x00\xb7\x00\x01\x00\x00\x00" + b"\x00" * 40
    (foreign / "bin" / "helm").write_bytes(elf)
    (foreign / "bin" / "helm").chmod(0o755)
    with pytest.raises(OSError, match="Exec format error"):
        subprocess.run([str(foreign / "bin" / "helm"), "version"], capture_output=True, check=False)
    assert _lib_helm(foreign, "/usr/bin:/bin") == "helm"
    working = tmp_path / "working"
    (working / "bin").mkdir(parents=True)
    (working / "bin" / "helm").symlink_to(kit.helms["helm3"])
    assert _lib_helm(working, "/usr/bin:/bin") == str(working / "bin" / "helm")
    assert _lib_helm(working, "/usr/bin:/bin", helm_env="/opt/my/helm") == "/opt/my/helm"


def test_install_tools_skips_bundled_helm_off_linux_x86(tmp_path: Path) -> None:
    """On macOS/arm64 install-tools.sh installs no foreign helm and says to use your own."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_uname = bin_dir / "uname"
    fake_uname.write_text('#!/bin/sh\ncase "$1" in -s) echo Darwin;; -m) echo arm64;; *) echo Darwin;; esac\n')
    fake_uname.chmod(0o755)
    tools = tmp_path / "tools"
    res = subprocess.run(
        ["bash", str(SCRIPTS / "install-tools.sh")],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "TOOLS_DIR": str(tools),
             "SKIP_CHECKOV": "1", "SKIP_PROMTOOL": "1", "SKIP_CRD_VALIDATOR": "1"},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "bundled helm skipped" in res.stderr and "Darwin arm64" in res.stderr
    assert not (tools / "bin" / "helm").exists() and not (tools / "helm3").exists()


@pytest.mark.parametrize("helm", ["helm3", "helm4"])
def test_kind_node_image_pinned_within_kube_version(kit: Any, helm: str) -> None:
    """The kind node image is pinned by version and digest, and the chart installs on that version."""
    cfg = yaml.safe_load((REPO / "k8s" / "kind-config.yaml").read_text())
    images = {node.get("image", "") for node in cfg["nodes"]}
    assert len(images) == 1
    match = NODE_IMAGE.match(images.pop())
    assert match, "kindest/node:vX.Y.Z@sha256:<digest> expected"
    assert tuple(int(x) for x in match.group(1).split(".")[:2]) >= NGF_MIN_KUBERNETES
    ok = kit.helm(helm, "template", "x", str(kit.chart), "--kube-version", match.group(1))
    assert ok.returncode == 0, ok.stderr
    # The kubeVersion check is live: an older cluster is refused.
    old = kit.helm(helm, "template", "x", str(kit.chart), "--kube-version", "1.28.0")
    assert old.returncode != 0 and "kubeVersion" in old.stderr, old.stderr


def test_kind_values_render(kit: Any) -> None:
    """k8s/values-kind.yaml renders: HPA on, an HTTPRoute and no Ingress."""
    docs = kit.render((str(REPO / "k8s" / "values-kind.yaml"),))
    kinds = {d["kind"] for d in docs}
    assert {"HorizontalPodAutoscaler", "HTTPRoute", "PodDisruptionBudget"} <= kinds
    assert "Ingress" not in kinds
    assert "replicas" not in kit.deployment(docs)["spec"]


def test_readme_kind_quickstart_needs_no_bundled_tools() -> None:
    """The README's kind quickstart runs only make targets that exist, and not `make tools`."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Quickstart on kind", 1)[1].split("\n### ", 1)[0]
    commands = re.findall(r"^make ([a-z0-9-]+)", section, flags=re.M)
    assert commands and "tools" not in commands
    targets = set(re.findall(r"^([a-z0-9-]+):", (REPO / "Makefile").read_text(), flags=re.M))
    assert set(commands) <= targets


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_scripts_shellcheck_clean(script: Path) -> None:
    """Every k8s and CI script uses strict mode and is shellcheck clean."""
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    if script.name != "lib.sh":
        assert "set -euo pipefail" in text
    if shutil.which("shellcheck") is None:
        missing_tool("shellcheck", "shellcheck")
    res = subprocess.run(
        ["shellcheck", "-x", str(script)], capture_output=True, text=True, cwd=script.parent, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_install_tools_is_idempotent(kit: Any) -> None:
    """A second run of install-tools.sh finds everything present and changes nothing."""
    helm3 = kit.helms["helm3"].stat().st_mtime_ns
    res = subprocess.run(
        ["bash", str(SCRIPTS / "install-tools.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "SKIP_PROMTOOL": "1", "HOME": str(kit.tools)},
    )
    assert res.returncode == 0, res.stderr
    assert "already present" in res.stderr
    assert kit.helms["helm3"].stat().st_mtime_ns == helm3
    assert (kit.tools / "bin" / "helm").resolve() == kit.helms["helm3"].resolve()


def _e2e_release_module() -> Any:
    """tests/e2e/release.py (how the e2e tests find the release), imported by path."""
    spec = importlib.util.spec_from_file_location("e2e_release", REPO / "tests" / "e2e" / "release.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("release", "sets"),
    [
        ("reviewserve", ()),
        ("demo", ()),
        ("prod-reviewserve-eu", ()),
        ("demo", ("nameOverride=sentiment",)),
        ("demo", ("fullnameOverride=api",)),
    ],
)
def test_e2e_finds_any_release(kit: Any, release: str, sets: tuple[str, ...]) -> None:
    """The e2e tests find the Deployment, its pods and its Service by labels, for any release name."""
    args = ["template", release, str(kit.chart), "--namespace", "elsewhere"]
    for s in sets:
        args += ["--set", s]
    res = kit.helm("helm3", *args)
    assert res.returncode == 0, res.stderr
    docs = [d for d in yaml.safe_load_all(res.stdout) if d]
    e2e = _e2e_release_module()
    deployment = e2e.app_deployment([d for d in docs if d["kind"] == "Deployment"], release)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = dict(kv.split("=", 1) for kv in e2e.pod_selector(deployment).split(","))
    assert all(pod_labels[k] == v for k, v in selector.items())
    test_pod = next(d for d in docs if d["kind"] == "Pod")
    assert not all(test_pod["metadata"]["labels"].get(k) == v for k, v in selector.items())
    service = e2e.app_service([d for d in docs if d["kind"] == "Service"], deployment)
    assert e2e.http_port(service) == 9696
    release_labels = dict(kv.split("=", 1) for kv in e2e.release_selector(release).split(","))
    for doc in (deployment, service):
        assert all(doc["metadata"]["labels"].get(k) == v for k, v in release_labels.items())
    with pytest.raises(LookupError):
        e2e.app_deployment([d for d in docs if d["kind"] == "Deployment"], "another-release")


def test_e2e_route_check_reads_gateway_status(kit: Any) -> None:
    """The e2e check of the HTTPRoute (tests/e2e/release.py) passes only once the Gateway's controller
    has Accepted the route and resolved its backend, for the Gateway values-kind.yaml names.

    The status is shaped as NGINX Gateway Fabric writes it (its "Get started" guide): the controller fills
    in group, kind and namespace of the parentRef.
    """
    route = kit.one(kit.render((str(REPO / "k8s" / "values-kind.yaml"),)), "HTTPRoute")
    e2e = _e2e_release_module()
    assert e2e.route_parent_problems(route) == ["nginx-gateway/gateway (http): no status from the Gateway's controller"]

    def status(resolved: str, reason: str, namespace: str = "nginx-gateway") -> dict[str, Any]:
        ref = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gateway"}
        return {
            "parents": [
                {
                    "controllerName": "gateway.nginx.org/nginx-gateway-controller",
                    "parentRef": {**ref, "namespace": namespace, "sectionName": "http"},
                    "conditions": [
                        {
                            "type": "Accepted",
                            "status": "True",
                            "reason": "Accepted",
                            "message": "The route is accepted",
                        },
                        {"type": "ResolvedRefs", "status": resolved, "reason": reason, "message": "..."},
                    ],
                }
            ]
        }

    assert e2e.route_parent_problems({**route, "status": status("True", "ResolvedRefs")}) == []
    [problem] = e2e.route_parent_problems({**route, "status": status("False", "BackendNotFound")})
    assert problem.startswith("nginx-gateway/gateway (http): ResolvedRefs False (BackendNotFound")
    # A status for a Gateway of the same name in another namespace is not this route's.
    assert e2e.route_parent_problems({**route, "status": status("True", "ResolvedRefs", namespace="default")})


# ------------------------------------------------------------- issue 16, items 14 and 16 ---


@pytest.mark.parametrize("port", ["8080", "80"])
def test_kind_host_port_is_a_variable_of_kind_up(tmp_path: Path, port: str) -> None:
    """Issue 16 item 14: `KIND_HOST_PORT=8080 make kind-up` (rootless Docker, Podman: no ports below
    1024) creates the cluster with the Gateway on 127.0.0.1:8080, the rest of the config unchanged;
    kind-e2e then targets that port."""
    kept = tmp_path / "kind-config.yaml"
    code, stderr, calls = _run_up(tmp_path, KIND_HOST_PORT=port, KEEP_KIND_CONFIG=str(kept))
    assert code == 0, stderr
    [create] = [c for c in calls if c[:3] == ["kind", "create", "cluster"]]
    used = yaml.safe_load(kept.read_text())
    original = yaml.safe_load((REPO / "k8s" / "kind-config.yaml").read_text())
    [mapping] = used["nodes"][0]["extraPortMappings"]
    assert mapping["hostPort"] == int(port) and mapping["listenAddress"] == "127.0.0.1"
    original["nodes"][0]["extraPortMappings"][0]["hostPort"] = int(port)
    assert used == original
    if port == "80":
        assert _opt(create, "--config") == str(REPO / "k8s" / "kind-config.yaml")
    makefile = (REPO / "Makefile").read_text()
    assert "KIND_HOST_PORT" in makefile
    env = {"PATH": "/usr/bin:/bin", "KIND_HOST_PORT": port, "HOME": str(tmp_path)}
    url = subprocess.run(
        ["bash", "-c", f"source {SCRIPTS / 'lib.sh'}; echo $GATEWAY_BASE_URL"],
        capture_output=True, text=True, env=env, timeout=30, check=True,
    ).stdout.strip()  # fmt: skip
    assert url == ("http://localhost" if port == "80" else f"http://localhost:{port}")
    assert 'GATEWAY_URL:-${GATEWAY_BASE_URL}' in (SCRIPTS / "kind-e2e.sh").read_text()


def test_kind_up_refuses_a_bad_host_port(tmp_path: Path) -> None:
    """Item 14: a typo in KIND_HOST_PORT is an error before any cluster is created."""
    code, stderr, calls = _run_up(tmp_path, KIND_HOST_PORT="80a")
    assert code != 0 and "KIND_HOST_PORT" in stderr
    assert not [c for c in calls if c[:3] == ["kind", "create", "cluster"]]


@pytest.mark.parametrize("save_platform", [True, False])
def test_kind_deploy_builds_and_saves_one_platform(kit: Any, tmp_path: Path, save_platform: bool) -> None:
    """Issue 16 item 16: the image is built for the node's platform (the Docker engine's architecture, or
    KIND_PLATFORM) and `docker save --platform` keeps only it in the archive when Docker has the flag (>= 28)."""
    calls = _run_deploy(
        kit, tmp_path, "demo", "shop", buildx=True, FAKE_DOCKER_ARCH="arm64",
        FAKE_SAVE_PLATFORM="1" if save_platform else "0",
    )  # fmt: skip
    build = next(c for c in calls if c[0] == "docker" and "build" in c)
    assert _opt(build, "--platform") == "linux/arm64"
    save = next(c for c in calls if c[:2] == ["docker", "save"] and "--help" not in c)
    if save_platform:
        assert _opt(save, "--platform") == "linux/arm64"
    else:
        assert "--platform" not in save, "an older Docker has no save --platform"
    (tmp_path / "x").mkdir()
    chosen = _run_deploy(kit, tmp_path / "x", "demo", "shop", buildx=True, KIND_PLATFORM="linux/amd64",
                         FAKE_SAVE_PLATFORM="1")  # fmt: skip
    save = next(c for c in chosen if c[:2] == ["docker", "save"] and "--help" not in c)
    assert _opt(save, "--platform") == "linux/amd64"


def test_kind_e2e_needs_only_the_e2e_extra() -> None:
    """Item 16: `make kind-e2e` installs the e2e extra, not the dev one (tritonclient, moto, mutmut), and
    that extra covers every third-party import of tests/e2e and the root conftest."""
    import tomllib

    makefile = (REPO / "Makefile").read_text()
    target = re.search(r"^kind-e2e:([^#\n]*)", makefile, flags=re.M)
    assert target and "install-dev" not in target.group(1) and ".e2e-installed" in target.group(1)
    assert ".[e2e]" in makefile
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    e2e = {re.split(r"[<>=\[ ]", r)[0].lower() for r in extras["e2e"]}
    assert not e2e & {"tritonclient", "moto", "mutmut", "schemathesis"}
    imported = set()
    for path in [*(REPO / "tests" / "e2e").glob("*.py"), REPO / "tests" / "conftest.py"]:
        for m in re.finditer(r"^\s*(?:import|from) ([a-zA-Z_]+)", path.read_text(), flags=re.M):
            imported.add(m.group(1))
    local = {"release", "conftest", "test_cluster", "tests", "reviewserve", "__future__"}
    third_party = {m for m in imported - local if m not in sys.stdlib_module_names}
    assert third_party <= e2e | {"yaml"} and ("yaml" not in third_party or "pyyaml" in e2e), third_party


# ------------------------------------------------- issue 16, items 3, 13, 17: the documented commands ---

DOC_FILES = ("docs/kubernetes.md", "docs/batch.md", "docs/streaming.md", "README.md", "charts/reviewserve/README.md")
MY_VALUES = {"image": {"repository": "registry.example.com/reviewserve", "tag": "1.0.0"}}
# What a command substitution in a documented command stands for (docs/model.md's is a model's sha256).
COMMAND_OUTPUT = "0" * 64


def _doc_commands(files: tuple[str, ...] = DOC_FILES) -> list[tuple[str, list[str]]]:
    """Every command of the docs' bash blocks (continuations joined, comments dropped, `a && b` as two), as
    argv; `$VAR` expanded from the block's `VAR=value` lines, `$(...)` replaced by COMMAND_OUTPUT."""
    import shlex

    found = []
    for name in files:
        for block in re.findall(r"```bash\n(.*?)```", (REPO / name).read_text(), flags=re.S):
            env: dict[str, str] = {}
            for line in block.replace("\\\n", " ").splitlines():
                line = re.sub(r"\$\((?!\()[^)]*\)", COMMAND_OUTPUT, line)
                argv = shlex.split(line, comments=True)
                if argv and all(re.fullmatch(r"[A-Z_]+=\S*", a) for a in argv):  # variables, no command
                    env.update(a.split("=", 1) for a in argv)
                    continue
                for var, value in env.items():
                    argv = [a.replace(f"${var}", value) for a in argv]
                while "&&" in argv:
                    found.append((name, argv[: argv.index("&&")]))
                    argv = argv[argv.index("&&") + 1 :]
                if argv:
                    found.append((name, argv))
    return found


def _helm_install_commands() -> list[tuple[str, list[str], list[str]]]:
    """The documented `helm upgrade`/`helm install` commands, each with the values of the command before it
    in the same file (what `--reuse-values` reuses)."""
    out, previous = [], {}
    for name, argv in _doc_commands():
        if argv[0] == "helm" and argv[1] in ("upgrade", "install"):
            out.append((name, argv, previous.get(name, [])))
            previous[name] = argv
    return out


def _template_args(argv: list[str], tmp_path: Path, chart_package: Path) -> list[str]:
    """`helm template` arguments rendering what a documented `helm upgrade --install` would apply."""
    drop = {"upgrade", "install", "--install", "--wait", "--create-namespace", "--reuse-values", "--atomic"}
    with_value = {"--timeout", "--version"}
    my_values = tmp_path / "my-values.yaml"
    my_values.write_text(yaml.safe_dump(MY_VALUES))
    args, skip = ["template"], False
    for a in argv[1:]:
        if skip:
            skip = False
        elif a in with_value:
            skip = True
        elif a not in drop:
            if a.startswith("oci://"):
                a = str(chart_package)
            elif a == "charts/reviewserve":
                a = str(REPO / "charts" / "reviewserve")
            elif a.startswith("my-") and a.endswith(".yaml"):
                a = str(my_values)
            args.append(a)
    return args


def _value_flags(argv: list[str]) -> list[str]:
    """The values flags of a command (-f/--values/--set...), with their arguments."""
    flags = ("-f", "--values", "--set", "--set-string", "--set-json")
    return [x for i, a in enumerate(argv[:-1]) if a in flags for x in (a, argv[i + 1])]


def _sets(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--set", "--set-string", "--set-json")]


@pytest.fixture(scope="module")
def chart_package(kit: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart packaged as the docs say (`helm package charts/reviewserve --destination dist/`)."""
    dist = tmp_path_factory.mktemp("dist")
    [package] = [argv for _, argv in _doc_commands() if argv[:2] == ["helm", "package"]]
    args = [str(REPO / a) if a == "charts/reviewserve" else str(dist) if a == "dist/" else a for a in package[1:]]
    res = kit.helm("helm3", *args)
    assert res.returncode == 0, res.stderr
    [tgz] = list(dist.glob("*.tgz"))
    return tgz


def test_docs_helm_commands_render_and_keep_the_release(kit: Any, tmp_path: Path, chart_package: Path) -> None:
    """Items 3 and 13: every documented `helm upgrade`/`helm install` renders (schema and render-time
    checks pass) and keeps the release's other values: it passes a values file, reuses the values, or is
    a first install naming the image - never a bare `--set` that resets the release to the defaults."""
    commands = _helm_install_commands()
    assert len(commands) >= 6, commands
    for name, argv, before in commands:
        keeps = {"-f", "--values", "--reuse-values", "--reset-then-reuse-values"} & set(argv)
        first_install = any(s.startswith("image.repository=") for s in _sets(argv))
        assert keeps or first_install, f"{name}: {' '.join(argv)} would reset the release's values"
        args = _template_args(argv, tmp_path, chart_package)
        if "--reuse-values" in argv:  # what the release had: the previous command's values, then these
            args = [*args[:3], *_value_flags(_template_args(before, tmp_path, chart_package)), *args[3:]]
        res = kit.helm("helm3", *args)
        assert res.returncode == 0, f"{name}: {' '.join(argv)}\n{res.stderr}"


def test_docs_ingress_host_form_works(kit: Any, tmp_path: Path, chart_package: Path) -> None:
    """Item 13: the documented way to set the Ingress host gives the whole entry (host and the API paths);
    `--set ingress.hosts[0].host=...` alone, which the schema refuses, is not suggested anywhere."""
    for name in DOC_FILES:
        assert "`ingress.hosts[0].host=reviewserve.example.com`" not in (REPO / name).read_text(), name
    for name, argv in _doc_commands():
        assert not [s for s in _sets(argv) if s.startswith("ingress.hosts[")], f"{name}: {argv}"
    bare = kit.template(sets=("ingress.enabled=true", "ingress.hosts[0].host=reviewserve.example.com"))
    assert bare.returncode != 0 and "paths" in bare.stderr
    [argv] = [a for _, a, _ in _helm_install_commands() if any(s.startswith("ingress.hosts=") for s in _sets(a))]
    res = kit.helm("helm3", *_template_args(argv, tmp_path, chart_package))
    assert res.returncode == 0, res.stderr
    [ingress] = [d for d in yaml.safe_load_all(res.stdout) if d and d["kind"] == "Ingress"]
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == "reviewserve.example.com"
    assert {p["path"] for p in rule["http"]["paths"]} == {"/predict", "/v2"}


def test_docs_kind_commands_keep_the_route_and_the_loaded_image(kit: Any, tmp_path: Path) -> None:
    """Item 3: the documented way to change the kind release (batch, stream) is `make kind-deploy` with
    HELM_ARGS; run through kind-deploy.sh, the release keeps the HTTPRoute and the image kind loaded,
    and gets what the arguments ask for."""
    commands = [(n, a) for n, a in _doc_commands() if "kind-deploy" in a and any(x.startswith("HELM_ARGS=") for x in a)]
    assert {n for n, _ in commands} >= {"docs/batch.md", "docs/streaming.md", "docs/kubernetes.md"}, commands
    extra = tmp_path / "my-kind-values.yaml"
    extra.write_text("{}\n")
    for i, (name, argv) in enumerate(commands):
        helm_args = next(a for a in argv if a.startswith("HELM_ARGS=")).split("=", 1)[1]
        helm_args = helm_args.replace("my-kind-values.yaml", str(extra))
        run_dir = tmp_path / f"run{i}"
        run_dir.mkdir()
        _run_deploy(kit, run_dir, "reviewserve", "reviewserve", buildx=True, HELM_ARGS=helm_args)
        docs = [d for d in yaml.safe_load_all((run_dir / "helm-stdout.yaml").read_text()) if d]
        kinds = {d["kind"] for d in docs}
        assert "HTTPRoute" in kinds, f"{name}: {helm_args} deletes the HTTPRoute"
        images = {c["image"] for d in docs if d["kind"] == "Deployment" and "redis" not in d["metadata"]["name"]
                  for c in d["spec"]["template"]["spec"]["containers"]}  # fmt: skip
        assert images == {"reviewserve:kind-test"}, f"{name}: {helm_args} -> {images}"
        if "batch.cronJob.enabled=true" in helm_args:
            assert "CronJob" in kinds
        if "stream.enabled=true" in helm_args:
            assert any(d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-stream") for d in docs)


def test_docs_show_how_the_image_and_chart_reach_a_registry(chart_package: Path) -> None:
    """Item 17: "Install with Helm (any cluster)" builds, tags and pushes the image it installs (also as a
    multi-platform image for amd64 and arm64 nodes), and pushes the chart as an OCI artifact whose
    package name is what `helm package` makes."""
    commands = [a for n, a in _doc_commands() if n == "docs/kubernetes.md"]
    installs = [a for a in commands if a[:2] == ["helm", "upgrade"] and "image.tag=1.0.0" in _sets(a)]
    assert installs
    ref = "registry.example.com/reviewserve:1.0.0"
    for install in installs:
        sets = dict(s.split("=", 1) for s in _sets(install))
        assert f"{sets['image.repository']}:{sets['image.tag']}" == ref
    assert ["docker", "build", "-t", ref, "."] in commands
    assert ["docker", "push", ref] in commands
    [multi] = [a for a in commands if a[:3] == ["docker", "buildx", "build"]]
    platforms = set(multi[multi.index("--platform") + 1].split(","))
    assert {"linux/amd64", "linux/arm64"} <= platforms and "--push" in multi and ref in multi
    [push] = [a for a in commands if a[:2] == ["helm", "push"]]
    assert Path(push[2]).name == chart_package.name and push[3].startswith("oci://")
    chart = yaml.safe_load((REPO / "charts" / "reviewserve" / "Chart.yaml").read_text())
    oci = [a for a in installs if any(x.startswith("oci://") for x in a)]
    assert oci and all(a[a.index("--version") + 1] == chart["version"] for a in oci)
    assert next(x for x in oci[0] if x.startswith("oci://")) == f"{push[3]}/{chart['name']}"


def test_docs_model_commands_walk_a_kind_release(kit: Any) -> None:
    """Items 1 and 3 (the docs walked command by command): docs/model.md's roll-out, canary, promote and
    back-out commands, applied in order (each --reuse-values; `helm rollback` back to the revision before)
    to a release as `make kind-deploy` installs it, all render and keep the HTTPRoute and the loaded image;
    the canary's share is on the route; the NetworkPolicy lets the pods reach the documented MinIO."""
    kind = ["-f", str(REPO / "k8s" / "values-kind.yaml"), "--set", "image.tag=kind-test"]
    revisions, walked = [kind], 0
    for _, argv in _doc_commands(("docs/model.md",)):
        if argv[:2] == ["helm", "rollback"]:
            revisions.append(revisions[-2])
        elif argv[:2] in (["helm", "upgrade"], ["helm", "install"]):
            assert "--reuse-values" in argv, f"{' '.join(argv)} would reset the kind release"
            revisions.append([*revisions[-1], *_value_flags(argv)])
        else:
            continue
        walked += 1
        res = kit.helm("helm3", "template", "rs", str(REPO / "charts" / "reviewserve"), *revisions[-1])
        assert res.returncode == 0, f"{' '.join(argv)}\n{res.stderr}"
        docs = [d for d in yaml.safe_load_all(res.stdout) if d]
        [route] = [d for d in docs if d["kind"] == "HTTPRoute"]
        web = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
        assert {c["image"] for d in web.values() for c in d["spec"]["template"]["spec"]["containers"]} == {
            "reviewserve:kind-test"
        }
        weights = {b["name"]: b.get("weight", 1) for r in route["spec"]["rules"] for b in r["backendRefs"]}
        sets = dict(s.split("=", 1) for s in _sets(revisions[-1]))
        if sets.get("canary.enabled") == "true":
            assert "rs-reviewserve-canary" in web
            assert weights["rs-reviewserve-canary"] == int(sets["canary.weight"]), weights
        else:
            assert set(weights) == {"rs-reviewserve"}, weights
        [policy] = [d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "rs-reviewserve"]
        if sets.get("model.uri", "").startswith("s3://"):
            assert 9000 in {p["port"] for r in policy["spec"]["egress"] for p in r.get("ports", [])}
    assert walked >= 7, walked

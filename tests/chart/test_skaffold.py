"""skaffold.yaml: valid under skaffold's published v4beta13 schema, and deploys what it builds.

There is no skaffold binary here, so what skaffold would do is checked from its side: the config
(and every profile applied to it) against the published schema (tests/chart/schemas/, see the README
there), then the Helm release it describes rendered with real helm, with the image skaffold would
have built wired in through `setValueTemplates`.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((Path(__file__).with_name("schemas") / "skaffold-v4beta13.json").read_text())
BUILT = {"IMAGE_REPO_reviewserve": "registry.example.com/reviewserve", "IMAGE_TAG_reviewserve": "3f2a9c1"}


def _config() -> dict[str, Any]:
    return yaml.safe_load((REPO / "skaffold.yaml").read_text())


def _errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def _apply(doc: dict[str, Any], patches: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply a profile's JSON-patch `add`/`replace` operations to a copy (as skaffold does)."""
    out = copy.deepcopy(doc)
    for patch in patches:
        assert patch.get("op", "replace") in ("add", "replace"), patch
        *parents, last = patch["path"].split("/")[1:]
        node: Any = out
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if isinstance(node, list):
            node.insert(int(last), patch["value"])
        else:
            assert patch.get("op") == "add" or last in node, f"replace of missing {patch['path']}"
            node[last] = patch["value"]
    return out


def _variants() -> dict[str, dict[str, Any]]:
    """The config as is and with each profile applied."""
    config = _config()
    out = {"default": config}
    for profile in config.get("profiles", []):
        out[profile["name"]] = _apply(config, profile.get("patches", []))
    return out


def test_schema_version_matches_config() -> None:
    """The vendored schema is the one for the config's apiVersion."""
    assert _config()["apiVersion"] == "skaffold/v4beta13"
    assert "SkaffoldConfig" in SCHEMA["definitions"] and len(SCHEMA["definitions"]) > 80


@pytest.mark.parametrize("variant", list(_variants()))
def test_skaffold_valid_under_published_schema(variant: str) -> None:
    """skaffold.yaml, and each profile applied to it, validates against skaffold's v4beta13 schema."""
    assert _errors(_variants()[variant]) == []


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda c: c["deploy"]["helm"]["releases"][0].update(setValueTemplate={}), "setValueTemplate"),
        (lambda c: c["portForward"][0].update(localPort="9696"), "localPort"),
        (lambda c: c["build"]["local"].update(useBuildKit=True), "useBuildKit"),
        (lambda c: c["profiles"][0]["activation"][0].update(context="kind"), "context"),
        (lambda c: c["build"]["artifacts"][0]["docker"].update(cliFlags="--provenance=false"), "cliFlags"),
    ],
)
def test_schema_catches_mistakes(mutate: Any, where: str) -> None:
    """The schema is live: typos and wrong types in the fields this config uses are rejected."""
    config = _config()
    mutate(config)
    errors = _errors(config)
    assert errors, f"accepted a broken {where}"


def _expand(template: str) -> str:
    """skaffold's Go-template expansion of {{.NAME}} from the built image values."""
    return re.sub(r"\{\{\s*\.(\w+)\s*\}\}", lambda m: BUILT[m.group(1)], template)


@pytest.mark.parametrize("variant", list(_variants()))
def test_skaffold_deploys_the_image_it_builds(kit: Any, variant: str) -> None:
    """The Helm release skaffold deploys runs the built image, and portForward targets its Service port."""
    config = _variants()[variant]
    (artifact,) = config["build"]["artifacts"]
    assert (REPO / artifact.get("context", ".") / artifact["docker"]["dockerfile"]).is_file()
    (release,) = config["deploy"]["helm"]["releases"]
    args = ["template", release["name"], str(REPO / release["chartPath"]), "--namespace", release["namespace"]]
    for values_file in release.get("valuesFiles", []):
        args += ["-f", str(REPO / values_file)]
    for key, value in release.get("setValues", {}).items():
        args += ["--set", f"{key}={value}"]
    for key, value in release.get("setValueTemplates", {}).items():
        args += ["--set", f"{key}={_expand(value)}"]
    res = kit.helm("helm3", *args)
    assert res.returncode == 0, res.stderr
    docs = [d for d in yaml.safe_load_all(res.stdout) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"{BUILT['IMAGE_REPO_reviewserve']}:{BUILT['IMAGE_TAG_reviewserve']}"
    assert artifact["image"] == "reviewserve"  # the name IMAGE_REPO_/IMAGE_TAG_ are derived from
    for forward in config["portForward"]:
        services = [
            d
            for d in docs
            if d["kind"] == "Service"
            and d["metadata"]["name"] == forward["resourceName"]
            and d["metadata"]["namespace"] == forward["namespace"]
        ]
        assert services, f"portForward targets {forward['resourceName']}, which the release does not create"
        assert forward["port"] in [p["port"] for p in services[0]["spec"]["ports"]]


def test_kind_profile_targets_kind_and_builds_without_attestation() -> None:
    """The kind profile: the context `make kind-up` creates, kind values, an image kind can import."""
    profile = next(p for p in _config()["profiles"] if p["name"] == "kind")
    lib = (REPO / "k8s" / "scripts" / "lib.sh").read_text()
    cluster = re.search(r'CLUSTER="\$\{KIND_CLUSTER:-([\w-]+)\}"', lib)
    assert cluster, "lib.sh names the kind cluster"
    context = f"kind-{cluster.group(1)}"
    assert {"kubeContext": context} in profile["activation"]
    patched = _variants()["kind"]
    assert patched["deploy"]["kubeContext"] == context
    assert patched["build"]["local"]["useDockerCLI"] is True  # cliFlags are only used through the CLI
    assert "--provenance=false" in patched["build"]["artifacts"][0]["docker"]["cliFlags"]
    assert patched["deploy"]["helm"]["releases"][0]["valuesFiles"] == ["k8s/values-kind.yaml"]

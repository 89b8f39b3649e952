"""Find a Helm release's app objects from what the cluster returns, for any release name and namespace.

Pure functions over plain manifests (dicts, as `kubectl get -o json` or `ApiClient.sanitize_for_serialization`
give them), so tests/chart can check them against the chart rendered for many release names without a cluster.
"""

from __future__ import annotations

from typing import Any

Manifest = dict[str, Any]


def release_selector(release: str) -> str:
    """Label selector for every object of a release that the chart labels (its standard labels)."""
    return f"app.kubernetes.io/instance={release},app.kubernetes.io/managed-by=Helm"


def app_deployment(deployments: list[Manifest], release: str) -> Manifest:
    """The release's web-server Deployment: instance label and pod component `server`.

    Names are never guessed (nameOverride, fullnameOverride and release names containing the chart
    name all change them); other Deployments of the same release (workers, consumers) are ignored.
    """
    mine = [
        d
        for d in deployments
        if (d["metadata"].get("labels") or {}).get("app.kubernetes.io/instance") == release
        and (d["spec"]["template"]["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "server"
        and (d["spec"]["template"]["metadata"].get("labels") or {}).get("track") != "canary"  # the second track
    ]
    if len(mine) != 1:
        names = [d["metadata"]["name"] for d in deployments]
        raise LookupError(f"expected one server Deployment of release {release!r}, found {len(mine)} among {names}")
    return mine[0]


def pod_selector(deployment: Manifest) -> str:
    """The Deployment's own pod selector as a label-selector string."""
    labels = deployment["spec"]["selector"]["matchLabels"]
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def app_service(services: list[Manifest], deployment: Manifest) -> Manifest:
    """The Service whose selector picks the Deployment's pods, with a port named http."""
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    found = [
        s
        for s in services
        if s["spec"].get("selector")
        and all(pod_labels.get(k) == v for k, v in s["spec"]["selector"].items())
        and any(p.get("name") == "http" for p in s["spec"]["ports"])
    ]
    if len(found) != 1:
        raise LookupError(f"expected one Service with an http port selecting {deployment['metadata']['name']}")
    return found[0]


def http_port(service: Manifest) -> int:
    """The Service's port named http."""
    return next(int(p["port"]) for p in service["spec"]["ports"] if p.get("name") == "http")


def route_parent_problems(route: Manifest) -> list[str]:
    """Why an HTTPRoute would not serve: for each of its parentRefs, no status from the Gateway's
    controller, or an Accepted or ResolvedRefs condition that is not True. Empty: attached and resolved.
    """
    own_ns = route["metadata"].get("namespace", "")

    def key(ref: Manifest) -> tuple[str, str, str]:
        return (ref.get("namespace") or own_ns, ref["name"], ref.get("sectionName") or "")

    statuses = {key(s["parentRef"]): s for s in (route.get("status") or {}).get("parents") or []}
    problems = []
    for ref in route["spec"]["parentRefs"]:
        where = "{}/{}".format(*key(ref)[:2]) + (f" ({ref['sectionName']})" if ref.get("sectionName") else "")
        status = statuses.get(key(ref))
        if status is None:
            problems.append(f"{where}: no status from the Gateway's controller")
            continue
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        for kind in ("Accepted", "ResolvedRefs"):
            cond = conditions.get(kind)
            if cond is None or cond.get("status") != "True":
                detail = f"{cond.get('status')} ({cond.get('reason')}: {cond.get('message')})" if cond else "missing"
                problems.append(f"{where}: {kind} {detail}")
    return problems

"""Fixtures for the end-to-end tests against a live cluster (kind: `make kind-up kind-deploy kind-e2e`).

Everything is skipped cleanly when no cluster is reachable (no kubeconfig, or the API server does not
answer within 3 s), unless REVIEWSERVE_E2E_REQUIRED=1 (set by k8s/scripts/kind-e2e.sh) turns that
into a failure. Settings (environment):

  REVIEWSERVE_E2E_CONTEXT      kube-context (default: the current one)
  REVIEWSERVE_E2E_NAMESPACE    namespace of the release (default: reviewserve)
  REVIEWSERVE_E2E_RELEASE      Helm release name (default: reviewserve)
  REVIEWSERVE_E2E_INGRESS_URL  base URL of the ingress (default: http://localhost)
  REVIEWSERVE_E2E_HELM         helm binary (default: .tools/bin/helm, else helm on PATH)
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def pytest_configure(config: pytest.Config) -> None:
    """Register the e2e marker (also registered by tests/chart/conftest.py)."""
    config.addinivalue_line("markers", "e2e: end-to-end tests against a live Kubernetes cluster")


@dataclass(frozen=True)
class Cluster:
    """Where the release under test lives, and API clients for it."""

    context: str | None
    namespace: str
    release: str
    fullname: str
    ingress_url: str
    helm: str | None
    kubectl: str | None
    core: object
    apps: object
    autoscaling: object


def _unavailable(reason: str) -> None:
    """Skip (or fail when the cluster is required) for a missing cluster."""
    if os.environ.get("REVIEWSERVE_E2E_REQUIRED") == "1":
        pytest.fail(f"cluster required but unavailable: {reason}")
    pytest.skip(f"no Kubernetes cluster: {reason}")


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """Connect to the cluster (3 s budget) and find the release's Deployment, or skip."""
    try:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException
    except ImportError:  # pragma: no cover - kubernetes is a dev dependency
        _unavailable("the kubernetes Python client is not installed")
        raise
    context = os.environ.get("REVIEWSERVE_E2E_CONTEXT") or None
    try:
        config.load_kube_config(context=context)
    except (ConfigException, FileNotFoundError, OSError) as exc:
        _unavailable(f"no usable kubeconfig ({exc})")
    try:
        probe = client.Configuration.get_default_copy()
        probe.retries = 0  # one attempt: the 3 s budget is for the whole probe
        with client.ApiClient(probe) as api:
            client.VersionApi(api).get_code(_request_timeout=3)
    except Exception as exc:
        _unavailable(f"API server not answering within 3 s ({type(exc).__name__})")
    namespace = os.environ.get("REVIEWSERVE_E2E_NAMESPACE", "reviewserve")
    release = os.environ.get("REVIEWSERVE_E2E_RELEASE", "reviewserve")
    fullname = release if "reviewserve" in release else f"{release}-reviewserve"
    apps = client.AppsV1Api()
    try:
        apps.read_namespaced_deployment(fullname, namespace, _request_timeout=5)
    except client.ApiException as exc:
        _unavailable(f"release {release} not deployed in namespace {namespace} ({exc.status})")
    local_helm = REPO / ".tools" / "bin" / "helm"
    helm = os.environ.get("REVIEWSERVE_E2E_HELM") or (
        str(local_helm) if local_helm.exists() else shutil.which("helm")
    )
    return Cluster(
        context=context,
        namespace=namespace,
        release=release,
        fullname=fullname,
        ingress_url=os.environ.get("REVIEWSERVE_E2E_INGRESS_URL", "http://localhost").rstrip("/"),
        helm=helm,
        kubectl=shutil.which("kubectl"),
        core=client.CoreV1Api(),
        apps=apps,
        autoscaling=client.AutoscalingV2Api(),
    )

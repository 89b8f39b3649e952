"""Fixtures for the end-to-end tests against a live cluster (kind: `make kind-up kind-deploy kind-e2e`).

Everything is skipped cleanly when no cluster is reachable (no kubeconfig, or the API server does not
answer within 3 s), unless REVIEWSERVE_E2E_REQUIRED=1 (set by k8s/scripts/kind-e2e.sh) turns that
into a failure. Settings (environment):

  REVIEWSERVE_E2E_CONTEXT      kube-context (default: the current one)
  REVIEWSERVE_E2E_NAMESPACE    namespace of the release (default: reviewserve; any namespace works)
  REVIEWSERVE_E2E_RELEASE      Helm release name (default: reviewserve; any release name works)
  REVIEWSERVE_E2E_GATEWAY_URL  base URL of the release's HTTPRoute, or of its Ingress (default:
                               http://localhost, where `make kind-up` publishes the cluster's Gateway);
                               REVIEWSERVE_E2E_INGRESS_URL is read when it is not set
  REVIEWSERVE_E2E_HELM         helm binary (default: .tools/bin/helm when it runs, else helm on PATH)

The release's Deployment, pods and Service are found by labels and selectors (tests/e2e/release.py),
never by a name derived from the release name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # release.py beside this file, whatever pytest's import mode
    sys.path.insert(0, str(HERE))

from release import app_deployment, app_service, http_port, pod_selector, release_selector  # noqa: E402

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
    fullname: str  # the Deployment's name (and the Service's, as the chart names both)
    pod_selector: str  # the Deployment's own matchLabels
    service: str
    service_port: int
    gateway_url: str  # where the HTTPRoute (or Ingress) answers
    helm: str | None
    kubectl: str | None
    core: object
    apps: object
    autoscaling: object
    custom: object
    networking: object = None
    batch: object = None


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
    apps, core = client.AppsV1Api(), client.CoreV1Api()
    serialize = client.ApiClient().sanitize_for_serialization
    try:
        found = apps.list_namespaced_deployment(
            namespace, label_selector=release_selector(release), _request_timeout=5
        ).items
        deployment = app_deployment([serialize(d) for d in found], release)
        services = core.list_namespaced_service(namespace, label_selector=release_selector(release)).items
        service = app_service([serialize(s) for s in services], deployment)
    except (client.ApiException, LookupError) as exc:
        _unavailable(f"release {release} not found in namespace {namespace} ({exc})")
    return Cluster(
        context=context,
        namespace=namespace,
        release=release,
        fullname=deployment["metadata"]["name"],
        pod_selector=pod_selector(deployment),
        service=service["metadata"]["name"],
        service_port=http_port(service),
        gateway_url=(
            os.environ.get("REVIEWSERVE_E2E_GATEWAY_URL")
            or os.environ.get("REVIEWSERVE_E2E_INGRESS_URL")
            or "http://localhost"
        ).rstrip("/"),
        helm=_helm(),
        kubectl=shutil.which("kubectl"),
        core=core,
        apps=apps,
        autoscaling=client.AutoscalingV2Api(),
        custom=client.CustomObjectsApi(),
        networking=client.NetworkingV1Api(),
        batch=client.BatchV1Api(),
    )


def _helm() -> str | None:
    """REVIEWSERVE_E2E_HELM, else the project's helm when it runs on this machine, else helm on PATH."""
    if os.environ.get("REVIEWSERVE_E2E_HELM"):
        return os.environ["REVIEWSERVE_E2E_HELM"]
    local = REPO / ".tools" / "bin" / "helm"
    try:
        if subprocess.run([str(local), "version"], capture_output=True, timeout=30).returncode == 0:
            return str(local)
    except OSError:  # missing, or built for another platform (exec format error)
        pass
    return shutil.which("helm")

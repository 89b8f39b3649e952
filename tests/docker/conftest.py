"""Fixtures for the Docker image tests: a running engine, the local base image, the app image.

The engine is started with .ci/start-dockerd when it is not running. Docker not installed fails the
tests (make test installs docker.io); they skip only when an installed engine cannot be started (not
root), and even then fail when CI=true or REVIEWSERVE_REQUIRE_DOCKER=1. The image is built once per session with
Debian's client /usr/bin/docker and BuildKit, exactly as CI builds it (see docs/docker.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # helper modules beside this file, whatever pytest's import mode
    sys.path.insert(0, str(HERE))

from docker_settings import BASE_IMAGE, IMAGE, REPO, build_command  # noqa: E402
from dockerpod import DOCKER, run  # noqa: E402
from nginxingress import NGINX  # noqa: E402

from tests.systools import missing_tool  # noqa: E402

BUILD_LOG = Path(os.environ.get("REVIEWSERVE_BUILD_LOG", "/tmp/reviewserve-docker-build.log"))


def pytest_configure(config: pytest.Config) -> None:
    """Register the `docker` marker (the root conftest and pyproject belong to the app)."""
    config.addinivalue_line(
        "markers", "docker: needs a Docker engine (started by .ci/start-dockerd); builds the image once"
    )


def _skip_or_fail(reason: str) -> None:
    # CI (CI=true) must run these tests: there a missing engine is a failure, not a skip.
    if os.environ.get("REVIEWSERVE_REQUIRE_DOCKER") == "1" or os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true or REVIEWSERVE_REQUIRE_DOCKER=1: Docker is required)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """A Docker engine that answers /usr/bin/docker, started by .ci/start-dockerd if need be."""
    if not Path(DOCKER).exists():
        missing_tool(DOCKER, "docker.io")
    engine_up = subprocess.run([DOCKER, "info"], capture_output=True, check=False).returncode == 0
    if not engine_up:
        if not Path("/usr/sbin/dockerd").exists():
            missing_tool("dockerd (no Docker engine answers)", "docker.io")
        if os.geteuid() != 0:
            _skip_or_fail("no Docker engine answers and only root can start dockerd")
        run([str(REPO / ".ci/start-dockerd")], timeout=120)
    return DOCKER


@pytest.fixture(scope="session")
def base_image(docker_engine: str) -> str:
    """The base image: made by .ci/build-base-image (debootstrap) unless it already exists."""
    exists = subprocess.run([docker_engine, "image", "inspect", BASE_IMAGE], capture_output=True, check=False)
    if exists.returncode != 0:
        if BASE_IMAGE != "reviewserve-base:bookworm":
            pytest.fail(f"base image {BASE_IMAGE} (REVIEWSERVE_BASE_IMAGE) is not in the local engine")
        run([str(REPO / ".ci/build-base-image")], timeout=900)
    return BASE_IMAGE


@pytest.fixture(scope="session")
def image(docker_engine: str, base_image: str) -> str:
    """The app image, built once per session from the repository's Dockerfile (log: BUILD_LOG).

    REVIEWSERVE_SKIP_BUILD=1 uses an image already built under REVIEWSERVE_TEST_IMAGE instead.
    """
    if os.environ.get("REVIEWSERVE_SKIP_BUILD") == "1":
        if subprocess.run([docker_engine, "image", "inspect", IMAGE], capture_output=True).returncode != 0:
            pytest.fail(f"REVIEWSERVE_SKIP_BUILD=1 but {IMAGE} is not in the local engine")
        return IMAGE
    cmd = build_command(base_image, IMAGE)
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    with BUILD_LOG.open("w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=1500, check=False)
    if proc.returncode != 0:
        pytest.fail(f"docker build failed ({proc.returncode}), log {BUILD_LOG}:\n{BUILD_LOG.read_text()[-6000:]}")
    return IMAGE


@pytest.fixture(scope="session")
def helm() -> Path:
    """Helm 3, installed into .tools by k8s/scripts/install-tools.sh."""
    path = Path(os.environ.get("HELM", REPO / ".tools/helm3/helm"))
    if not path.exists():
        pytest.fail(f"helm not found at {path}: run k8s/scripts/install-tools.sh")
    return path


@pytest.fixture(scope="session")
def nginx() -> str:
    """The nginx binary (Debian package nginx-light)."""
    if not Path(NGINX).exists():
        pytest.fail(f"nginx not found at {NGINX}: apt-get install -y nginx-light")
    return NGINX

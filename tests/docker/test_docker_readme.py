"""Issue 17: the README's Docker block, as written, against the image the Docker tests build.

The build line is the one the `image` fixture runs (same Dockerfile and context; the fixture adds the local
base image, as docs/docker.md explains for machines without a registry, and its own tag so parallel runs
never clobber `reviewserve:latest`). The run line runs exactly as shown with that tag and a free host port;
the curl must print what the README shows.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import requests
from dockerpod import DOCKER

from tests.conftest import free_port
from tests.newcomer.readme_runner import compare, sections

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()

pytestmark = pytest.mark.docker


def test_readme_docker_block_runs_as_written(image: str) -> None:
    """docker run with the README's flags (read-only, tmpfs, no capabilities) serves the seed curl as shown."""
    commands = [c for block in sections(README)["Docker image"] for c in block]
    build, run, curl = commands[0].text, commands[1].text, commands[2]
    assert shlex.split(build, comments=True)[1:] == ["docker", "build", "-t", "reviewserve:latest", "."], build
    port, name = free_port(), f"reviewserve-readme-{free_port()}"
    argv = shlex.split(
        comments=True, s=run.replace("reviewserve:latest", image).replace("-p 9696:9696", f"-p 127.0.0.1:{port}:9696")
    )
    assert argv[:2] == ["docker", "run"] and image in argv
    argv = [DOCKER, "run", "--name", name, *argv[2:]]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
            assert time.monotonic() < deadline, "the README's docker run did not become ready in 120 s"
            time.sleep(0.5)
        argv = shlex.split(curl.text.replace("localhost:9696", f"127.0.0.1:{port}"))
        answer = subprocess.run(["curl", "-sS", "--fail", *argv[1:]], capture_output=True, text=True, timeout=30)
        assert answer.returncode == 0, answer.stderr
        shown = curl.shown_json()
        assert shown is not None
        compare(shown, json.loads(answer.stdout))
    finally:
        subprocess.run([DOCKER, "rm", "-f", name], capture_output=True, timeout=60, check=False)
        server.wait(timeout=60)

"""Issue 17 item 10: `docker run --read-only` without the documented --tmpfs mounts says what to mount."""

from __future__ import annotations

import os
import subprocess

import pytest
from dockerpod import DOCKER

pytestmark = pytest.mark.docker


def test_read_only_root_without_tmpfs_is_one_clear_line(image: str) -> None:
    """No writable metrics folder: exit 1 at once with one line naming the path and the --tmpfs flag."""
    proc = subprocess.run(
        [DOCKER, "run", "--rm", "--read-only", image], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith(
        "reviewserve: PROMETHEUS_MULTIPROC_DIR=/var/run/reviewserve/metrics must be writable (Read-only file system)"
    ), proc.stderr
    assert "--tmpfs /var/run/reviewserve/metrics" in lines[0]


def test_documented_mounts_start_the_server(image: str) -> None:
    """With the README's --tmpfs mounts the same image starts and answers the seed request."""
    name = f"reviewserve-readonly-{os.getpid()}"
    run = [DOCKER, "run", "-d", "--rm", "--name", name, "--read-only", "--tmpfs", "/tmp",
           "--tmpfs", "/var/run/reviewserve/metrics", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
           image]  # fmt: skip
    subprocess.run(run, capture_output=True, text=True, timeout=60, check=True)
    try:
        probe = [DOCKER, "exec", name, "python3", "-c",
                 "import time, urllib.request\n"
                 "for _ in range(120):\n"
                 "    try:\n"
                 "        print(urllib.request.urlopen('http://127.0.0.1:9696/readyz', timeout=2).status); break\n"
                 "    except Exception: time.sleep(0.5)\n"]  # fmt: skip
        ready = subprocess.run(probe, capture_output=True, text=True, timeout=120, check=False)
        assert ready.stdout.strip() == "200", ready.stdout + ready.stderr
    finally:
        subprocess.run([DOCKER, "rm", "-f", name], capture_output=True, timeout=60, check=False)

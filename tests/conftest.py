"""Shared fixtures: the committed model, an app on it, and a real gunicorn server on a free port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "models" / "review-sentiment" / "1"
SHARED_DATA = ROOT.parent / "shared" / "data"
SEED_REVIEW = {"review": "This Chatbot is amazing"}


def free_port() -> int:
    """A TCP port free on every address right now, picked on the wildcard address as the servers bind it.

    The same as ``benchmarks/ports.py``: the tests (the e2e ones run with only the e2e extra) do not use that tree.
    """
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def shared_file(*parts: str) -> Path:
    """A file under ../shared/data, or skip the test when the shared data is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"shared data not present: {path}")
    return path


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The committed model folder (read-only: copy it before changing anything)."""
    assert (MODEL_DIR / "card.json").is_file(), "the committed model is missing"
    return MODEL_DIR


@pytest.fixture
def model_copy(tmp_path: Path, model_dir: Path) -> Path:
    """A private copy of the committed model, safe to tamper with."""
    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    return target


@dataclass
class Server:
    """A gunicorn process started by the tests."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    metrics_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def health_url(self) -> str:
        """The probe port answered by the gunicorn master (HEALTH_PORT)."""
        return f"http://127.0.0.1:{self.env['HEALTH_PORT']}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def wait_workers(self, count: int, timeout: float = 30) -> list[int]:
        """Wait until the master has ``count`` worker processes; return their pids."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            if len(pids) == count:
                return pids
            time.sleep(0.05)
        raise AssertionError(f"expected {count} workers, have {self.worker_pids()}:\n{self.log()}")

    def wait_ready(self, timeout: float = 60, path: str = "/readyz", status: int = 200) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + path, timeout=2).status_code == status:
                    return
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or a busy machine
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not answering {status} on {path} within {timeout}s:\n{self.log()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_server(tmp_path: Path, workers: int = 2, **env: str) -> Server:
    """Start ``reviewserve serve`` (which execs gunicorn) on a free port."""
    port = free_port()
    metrics_dir = tmp_path / f"metrics-{port}"
    log_path = tmp_path / f"server-{port}.log"
    full_env = {
        **os.environ,
        "PORT": str(port),
        "HEALTH_PORT": str(free_port()),
        # Tests that count on every request being answered 200 (c=8 on 2 workers, recycling, slow clients)
        # must not see sheds on this shared machine; test_overload.py sets MAX_QUEUE_MS itself.
        "MAX_QUEUE_MS": "1000",
        "WORKERS": str(workers),
        "MODEL_PATH": str(MODEL_DIR),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "SHUTDOWN_DELAY": "0.5",
        "GRACEFUL_TIMEOUT": "15",
        **env,
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "reviewserve.cli", "serve"], cwd=ROOT, env=full_env, stdout=log, stderr=log
        )
    return Server(process, port, log_path, metrics_dir, env=full_env)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[object]:
    """Start servers on demand; all are stopped at teardown."""
    started: list[Server] = []

    def factory(workers: int = 2, wait: bool = True, **env: str) -> Server:
        server = start_server(tmp_path, workers=workers, **env)
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One 2-worker gunicorn shared by a module's read-only tests."""
    server = start_server(tmp_path_factory.mktemp("live"), workers=2)
    server.wait_ready()
    yield server
    assert server.stop() == 0, server.log()

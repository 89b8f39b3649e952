"""The servers under test: reviewserve as shipped and its peers, each started on a free port, on one model.

A :class:`Target` says how to start a server and what bodies it takes; :func:`started` runs it for a
block and stops it (SIGTERM to its process group, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from benchmarks import export, texts, venvs
from benchmarks.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
APPS = Path(__file__).resolve().parent / "peer_apps"
MODEL_DIR = ROOT / "models" / "review-sentiment" / "1"
V2_PATH = "/v2/models/review-sentiment/infer"


@dataclass
class Target:
    """A server to benchmark."""

    name: str
    label: str
    command: list[str]
    port: int
    single: tuple[str, str]  # (path, body) of a one-review request
    listed: tuple[str, str] | None  # (path, body) of a 32-review request, if the server takes lists
    check: str  # (path) POST single body must answer 200 with this text in it
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    versions: dict[str, str] = field(default_factory=dict)
    ready_timeout: float = 180.0
    single_for: Callable[[str], tuple[str, str]] | None = None  # (path, body) of a one-review request for a text
    ready_path: str | None = None  # readiness endpoint polled during the overload benchmark
    ready_port: int | None = None  # its port, when not the serving port
    cpus: frozenset[int] | None = None  # pinned to these CPUs (its workers default to their count); None: all

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ready_url(self) -> str | None:
        """Where readiness is polled (None: the server has no readiness endpoint)."""
        if self.ready_path is None:
            return None
        return f"http://127.0.0.1:{self.ready_port or self.port}{self.ready_path}"

    def singles(self, reviews: list[str]) -> list[tuple[str, str]]:
        """One-review requests, one per text, in this server's format."""
        assert self.single_for is not None
        return [self.single_for(text) for text in reviews]


@contextlib.contextmanager
def started(target: Target, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``target``, wait until its single-review request answers correctly, stop it afterwards."""
    with log.open("ab") as out:
        out.write(f"\n=== {target.name}: {' '.join(target.command)}\n".encode())
        out.flush()
        process = subprocess.Popen(
            target.command,
            cwd=target.cwd,
            env={**os.environ, **target.env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped whole, found whole for PSS
            preexec_fn=(lambda: os.sched_setaffinity(0, target.cpus)) if target.cpus else None,
        )
    try:
        _wait_answering(target, process)
        yield process
    finally:
        _stop(process)


def _wait_answering(target: Target, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + target.ready_timeout
    path, body = target.single
    last = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{target.name} exited with {process.returncode} before answering")
        try:
            response = requests.post(
                target.url + path, data=body, headers={"Content-Type": "application/json"}, timeout=5
            )
            if response.status_code == 200 and target.check in response.text:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except requests.RequestException as exc:
            last = repr(exc)
        time.sleep(0.3)
    raise RuntimeError(f"{target.name} not answering within {target.ready_timeout}s: {last}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    # children that outlived the leader (e.g. a worker pool) are still in the group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def group_pids(pgid: int) -> list[int]:
    """Every live process in process group ``pgid`` (the server and all it started)."""
    out = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


# ---- the targets -------------------------------------------------------------------------------


def _seed_single(text: str) -> tuple[str, str]:
    return "/predict", texts.single_body(text)


def reviewserve(sample: str, batch: list[str], work: Path) -> Target:
    """reviewserve as ``make run`` starts it: ``reviewserve serve`` with default settings (port aside)."""
    from reviewserve.settings import Settings

    port = free_port()
    # the metrics folder and ports are the only settings moved off their defaults (no clash with others)
    env = {"PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(work / f"metrics-{port}")}
    health_port = None
    if "health_port" in Settings.model_fields:  # the probe port (issue 15): readiness is polled there
        health_port = free_port()
        env["HEALTH_PORT"] = str(health_port)
    return Target(
        name="reviewserve",
        label="reviewserve (`make run` defaults)",
        command=[str(ROOT / ".venv" / "bin" / "reviewserve"), "serve"],
        port=port,
        env=env,
        single=("/predict", texts.single_body(sample)),
        listed=("/predict", texts.list_body(batch)),
        check='"prediction"',
        versions=venvs.versions(ROOT / ".venv" / "bin" / "python", ["flask", "gunicorn", "scikit-learn", "numpy"]),
        single_for=_seed_single,
        ready_path="/readyz",
        ready_port=health_port,
    )


def seed(python: Path, model: Path, sample: str) -> Target:
    """Seed-style: one Flask process, ``app.run(threaded=True)``."""
    port = free_port()
    return Target(
        name="seed",
        label="seed-style Flask `app.run(threaded=True)`",
        command=[str(python), str(APPS / "seed_app.py"), str(model), str(port)],
        port=port,
        single=("/predict", texts.single_body(sample)),
        listed=None,
        check='"prediction"',
        versions=venvs.versions(python, ["flask", "werkzeug", "scikit-learn"]),
        single_for=_seed_single,
    )


def plain(python: Path, model: Path, sample: str, batch: list[str]) -> Target:
    """Plain Flask under gunicorn: 2 sync workers, ``--preload``, plain predict_proba."""
    port = free_port()
    return Target(
        name="plain",
        label="plain Flask + gunicorn (2 sync workers, --preload)",
        command=[
            str(python), "-m", "gunicorn", "-w", "2", "--preload", "-b", f"127.0.0.1:{port}",
            "--chdir", str(APPS), "plain_app:app",
        ],
        port=port,
        env={"PEER_MODEL": str(model)},
        single=("/predict", texts.single_body(sample)),
        listed=("/predict", texts.list_body(batch)),
        check='"prediction"',
        versions=venvs.versions(python, ["flask", "gunicorn", "scikit-learn"]),
        single_for=_seed_single,
        ready_path="/healthz",  # answered by the same sync workers, as a plain app's health route is
    )


def mlserver(python: Path, joblib_file: Path, work: Path, sample: str, batch: list[str]) -> Target:
    """MLServer with its scikit-learn runtime (model-settings.json + joblib), V2 infer bodies."""
    port = free_port()
    folder = export.export_mlserver(joblib_file, work)
    settings = {"http_port": port, "grpc_port": free_port(), "metrics_port": free_port(), "host": "127.0.0.1"}
    (folder / "settings.json").write_text(json.dumps(settings))
    outputs = ["predict_proba"]
    return Target(
        name="mlserver",
        label="MLServer + mlserver-sklearn",
        command=[str(python.parent / "mlserver"), "start", str(folder)],
        port=port,
        single=(V2_PATH, texts.v2_body([sample], outputs, str_content_type=True)),
        listed=(V2_PATH, texts.v2_body(batch, outputs, str_content_type=True)),
        check='"predict_proba"',
        versions=venvs.versions(python, ["mlserver", "mlserver-sklearn", "uvicorn", "fastapi", "scikit-learn"]),
        single_for=lambda text: (V2_PATH, texts.v2_body([text], outputs, str_content_type=True)),
        ready_path="/v2/health/ready",
    )


def mlflow(python: Path, joblib_file: Path, work: Path, sample: str, batch: list[str], workers: int = 2) -> Target:
    """``mlflow models serve`` on a ``mlflow.sklearn.save_model`` folder, local env, -w 2."""
    port = free_port()
    folder = export.export_mlflow(python, joblib_file, work)
    return Target(
        name="mlflow",
        label=f"mlflow models serve (-w {workers})",
        command=[
            str(python.parent / "mlflow"), "models", "serve", "-m", str(folder), "-h", "127.0.0.1",
            "-p", str(port), "--env-manager", "local", "-w", str(workers),
        ],
        port=port,
        env={"PATH": f"{python.parent}:{os.environ.get('PATH', '')}"},
        single=("/invocations", json.dumps({"inputs": [sample]})),
        listed=("/invocations", json.dumps({"inputs": batch})),
        check="predictions",
        versions=venvs.versions(python, ["mlflow", "gunicorn", "uvicorn", "scikit-learn"]),
        single_for=lambda text: ("/invocations", json.dumps({"inputs": [text]})),
        ready_path="/health",
    )


PEER_STACKS: dict[str, list[str]] = {
    "seed": ["flask"],
    "plain": ["flask", "gunicorn"],
    # uvloop 0.22+ raises in MLServer 1.7's inference-pool worker ("no current event loop"): the pool
    # never loads the model. Capped to the last release MLServer 1.7 works with.
    "mlserver": ["mlserver==1.7.*", "mlserver-sklearn==1.7.*", "uvloop<0.22"],
    "mlflow": ["mlflow"],
}

PROJECT_PYTHON = Path(sys.executable)

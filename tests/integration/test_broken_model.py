"""A model file that matches its card but is not a valid skops archive, under real gunicorn with preload.

It used to raise out of ``create_app`` in the master (preload) and crash-loop; it must leave a live
server that is never ready and says why in ``/readyz``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from tests.conftest import SEED_REVIEW, Server
from tests.unit.test_broken_artifacts import BROKEN

pytestmark = pytest.mark.slow


def _without_attempt(reason: str) -> str:
    """The reason without the retry thread's " (attempt N; next in S s)" suffix."""
    return reason.split(" (attempt ", 1)[0]


@pytest.mark.parametrize("case", ["truncated", "wrong member"])
def test_broken_archive_under_gunicorn_is_alive_but_never_ready(server_factory, model_copy: Path, case: str) -> None:
    BROKEN[case][0](model_copy)
    server: Server = server_factory(wait=False, workers=2, MODEL_PATH=str(model_copy))
    server.wait_ready(path="/healthz")
    server.wait_workers(2)
    for _ in range(5):
        ready = requests.get(f"{server.url}/readyz", timeout=5)
        assert ready.status_code == 503
        reason = ready.json()["reason"]
        assert reason.startswith("model not loaded: model file ") and "is not a readable skops archive" in reason
        v2 = requests.get(f"{server.url}/v2/health/ready", timeout=5)
        # The retry thread may count another attempt between the two reads: compare the reason without
        # its "(attempt N; next in S s)" suffix.
        assert v2.status_code == 503 and v2.json()["ready"] is False
        assert _without_attempt(v2.json()["reason"]) == _without_attempt(reason)
        time.sleep(0.2)
    answer = requests.post(f"{server.url}/predict", json=SEED_REVIEW, timeout=5)
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "model_not_ready"
    assert server.process.poll() is None, server.log()  # the master is still up: no crash loop
    assert "model refused" in server.log() and "Traceback" not in server.log()
    assert server.stop() == 0

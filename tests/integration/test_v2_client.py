"""A real Open Inference Protocol (V2) client, tritonclient's HTTP client, against the live gunicorn server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import Server

pytestmark = pytest.mark.slow

# Run in a child process: tritonclient's HTTP transport is gevent-based, kept away from pytest's process.
CLIENT = """
import json, sys
import numpy as np
import tritonclient.http as http
from tritonclient.utils import InferenceServerException

client = http.InferenceServerClient(sys.argv[1])
out = {"live": client.is_server_live(), "ready": client.is_server_ready(),
       "model_ready": client.is_model_ready("review-sentiment"),
       "metadata": client.get_model_metadata("review-sentiment")}
review = http.InferInput("review", [3], "BYTES")
review.set_data_from_numpy(np.array([b"I love it", b"I hate it", b"Great value"], dtype=object), binary_data=False)
wanted = [http.InferRequestedOutput(n, binary_data=False) for n in ("label", "probability")]
result = client.infer("review-sentiment", [review], outputs=wanted, request_id="v2-client-1")
out["labels"] = [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("label").tolist()]
out["probabilities"] = result.as_numpy("probability").tolist()
out["id"] = result.get_response()["id"]
try:
    client.infer("no-such-model", [review])
except InferenceServerException as exc:
    out["error"] = {"status": exc.status(), "message": exc.message()}
print(json.dumps(out))
"""


def test_tritonclient_talks_to_the_server(live_server: Server) -> None:
    pytest.importorskip("tritonclient.http")
    done = subprocess.run(
        [sys.executable, "-c", CLIENT, f"127.0.0.1:{live_server.port}"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["live"] and out["ready"] and out["model_ready"]
    assert out["metadata"]["inputs"][0]["datatype"] == "BYTES"
    assert out["labels"] == ["positive", "negative", "positive"]
    assert all(0.5 <= p <= 1 for p in out["probabilities"])
    assert out["id"] == "v2-client-1"
    assert out["error"]["status"] == "404" and "no-such-model" in out["error"]["message"]

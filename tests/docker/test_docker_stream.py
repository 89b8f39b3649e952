"""The stream consumer image runs exactly as its rendered pod spec says, against a real Redis.

The chart is rendered with `stream.enabled=true` and an existing Secret for the Redis URL; the
Secret (which a cluster would hold) points at a redis-server this test starts on the Docker
bridge's gateway address, so the container reaches it over the network as a pod would. The
consumer Deployment's container becomes a `docker run` (user, read-only root, tmpfs, Secret
mounted read-only, env with the downward-API pod name, command, limits); its probes on the
health port must pass; reviews pushed into Redis come back as results; the kubelet-style stop
(SIGTERM, grace period) leaves nothing pending and exits 0.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from docker_settings import IMAGE, render_chart
from dockerpod import find_one, http_request, replicas, translate

from tests.conftest import free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]
POD = "t-reviewserve-stream-0"
ERROR_LINE = re.compile(r'"level": "(ERROR|CRITICAL)"|^Traceback')


def bridge_gateway() -> str:
    """The host's address on Docker's default bridge (docker0), which containers can reach."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True, text=True, check=False)
    match = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", out.stdout)
    if not match:
        pytest.fail(f"no IPv4 address on docker0: {out.stdout}{out.stderr}")
    return match.group(1)


@pytest.fixture
def bridge_redis(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """redis-server (no persistence) on 127.0.0.1 and the bridge gateway, on a free port."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        pytest.fail("redis-server is required: apt-get install -y redis-server")
    gateway = bridge_gateway()
    log = tmp_path / "redis.log"
    for _attempt in range(3):  # a port picked free can be taken before redis binds it: it exits, try another
        port = free_port()
        cmd = [binary, "--port", str(port), "--bind", f"127.0.0.1 {gateway}", "--protected-mode", "no"]
        cmd += ["--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
        with log.open("w") as out:
            process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        client = redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2)
        deadline = time.monotonic() + 20
        while process.poll() is None:
            try:
                client.ping()
                break
            except (redis.ConnectionError, redis.TimeoutError):
                if time.monotonic() > deadline:
                    process.kill()
                    process.wait()
                    pytest.fail(f"redis-server did not answer on port {port} in 20 s: {log.read_text()[-2000:]}")
                time.sleep(0.05)
        if process.poll() is None:
            break
    else:
        pytest.fail(f"redis-server exited at start, 3 times (last: port {port}): {log.read_text()[-2000:]}")
    yield gateway, port
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=20)


def test_consumer_runs_as_the_pod_spec_says(
    image: str, helm: Path, bridge_redis: tuple[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Probes pass, reviews are scored into the results stream, SIGTERM leaves nothing pending, exit 0."""
    gateway, port = bridge_redis
    docs = render_chart(helm, **{"stream.enabled": "true", "stream.redis.existingSecret": "t-redis"})
    # The Secret an operator would have created in the namespace.
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "t-redis"},
            "stringData": {"redis-url": f"redis://{gateway}:{port}/0"},
        }
    )
    deployment = find_one(docs, "Deployment", "t-reviewserve-stream")
    spec = translate(deployment, docs, pod_name=POD, secret_dir=tmp_path / "secrets")
    assert spec.image == IMAGE == image
    assert {"startup", "readiness", "liveness"} <= spec.probes.keys()
    assert spec.env["STREAM_CONSUMER"] == POD and "REDIS_URL" not in spec.env
    r = redis.Redis(port=port, decode_responses=True)
    texts = [f"review {i}: the battery is {'great' if i % 2 else 'awful'}" for i in range(50)]
    for text in texts:
        r.xadd("reviews", {"review": text})
    r.xadd("reviews", {"review": ""})

    with replicas(spec, 1) as [replica]:
        ready_after = time.monotonic() - replica.started_at
        with capsys.disabled():
            print(f"\n{' '.join(replica.docker_run_command())}\nready after {ready_after:.1f} s")
        deadline = time.monotonic() + 60
        while r.xlen("predictions") < len(texts) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert r.xlen("predictions") == len(texts), replica.logs()[-4000:]
        metrics = http_request(replica.host_port("health"), "GET", "/metrics")
        assert metrics.status == 200
        assert b'reviewserve_stream_messages_total{outcome="processed"} 50.0' in metrics.body
        r.xadd("reviews", {"review": "one more, in flight around the stop"})
        result = replica.stop_like_kubelet()
        logs = replica.logs()

    assert result.exited_in_time and result.exit_code == 0, logs[-4000:]
    assert result.total_seconds <= spec.grace_seconds
    [group] = r.xinfo_groups("reviews")
    assert group["name"] == "scorers" and group["pending"] == 0
    assert [c["name"] for c in r.xinfo_consumers("reviews", "scorers")] == [POD]
    assert [f["reason"].split(":")[0] for _, f in r.xrange("reviews:dead")] == ["empty_review"]
    sources = [f["source_id"] for _, f in r.xrange("predictions")]
    assert len(sources) == len(set(sources)) == r.xlen("reviews") - 1 - (group["lag"] or 0)
    errors = [line for line in logs.splitlines() if ERROR_LINE.search(line)]
    assert not errors, "errors logged under the pod's constraints:\n" + "\n".join(errors)

"""Days of recycling in minutes: the pod as the chart renders it, workers recycled every few requests.

The chart's metrics emptyDir becomes a ``--tmpfs`` of its ``sizeLimit`` (32 MiB), as the kubelet
mounts it. Before the fold of exited workers (reviewserve.web.metricsdir), every recycle left
~24 KiB of files there: /metrics slowed with uptime and after ~1,400 recycles the tmpfs was full and
every new worker died with SIGBUS. Here, under steady load through REVIEWSERVE_RECYCLES (default
1,000) recycles: no request fails, /metrics counts every request, and the folder's size and the
time of /metrics are the same after the first hundred recycles and at the end.

    REVIEWSERVE_RECYCLES=3000 .venv/bin/python -m pytest tests/docker/test_docker_recycling.py -s
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from docker_settings import IMAGE, SEED, render_chart
from dockerpod import DOCKER, RequestLoop, find_one, http_request, is_prediction, quantity, replicas, run, translate

RECYCLES = int(os.environ.get("REVIEWSERVE_RECYCLES", "1000"))
MAX_REQUESTS = 20  # per worker: a recycle every ~10 requests with 2 workers
WORKERS = 2
CLIENTS = 4
METRICS_MOUNT = "/var/run/reviewserve/metrics"
pytestmark = [pytest.mark.docker, pytest.mark.timeout(600 + RECYCLES)]

# Measured inside the container by its own Python (no reviewserve import: it also runs against old images).
USAGE = (
    "import json, os, sys; d = sys.argv[1]; s = os.statvfs(d);"
    "st = [os.stat(os.path.join(r, n)) for r, _, ns in os.walk(d) for n in ns];"
    "print(json.dumps({'files': len(st), 'bytes': sum(x.st_blocks * 512 for x in st),"
    " 'tmpfs_used': (s.f_blocks - s.f_bfree) * s.f_frsize}))"
)


def folder_usage(container: str) -> dict[str, int]:
    """Files and allocated bytes under the metrics mount, and what the tmpfs counts as used."""
    out = run([DOCKER, "exec", container, "python", "-c", USAGE, METRICS_MOUNT]).stdout
    return json.loads(out)


def boots(container: str) -> int:
    """Workers started so far (gunicorn logs each boot)."""
    logs = run([DOCKER, "logs", container], timeout=120)
    return (logs.stdout + logs.stderr).count("Booting worker with pid")


def metrics_time(port: int, rounds: int = 15) -> tuple[float, str]:
    """Fastest of ``rounds`` GET /metrics (its cost without the noise of a shared machine), and the last text."""
    times, text = [], ""
    for _ in range(rounds):
        started = time.perf_counter()
        resp = http_request(port, "GET", "/metrics", timeout=30)
        times.append(time.perf_counter() - started)
        assert resp.status == 200, resp
        text = resp.body.decode()
    return min(times), text


def counted_posts(text: str) -> float:
    """flask_http_request_total summed over POSTs (probes are GETs)."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "flask_http_request_total" and s.labels.get("method") == "POST"
    )


def test_thousands_of_recycles_in_the_pod_spec(image: str, helm: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = render_chart(
        helm,
        **{"config.maxRequests": str(MAX_REQUESTS), "config.maxRequestsJitter": "0", "config.workers": str(WORKERS)},
    )
    deployment = find_one(docs, "Deployment")
    spec = translate(deployment, docs, pod_name="t-reviewserve-recycle")
    assert spec.image == IMAGE == image
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    size_limit = int(quantity(volumes["metrics"]["emptyDir"]["sizeLimit"]))
    assert f"{METRICS_MOUNT}:rw,mode=1777,size={size_limit}" in spec.docker_args, spec.docker_args
    assert spec.env["MAX_REQUESTS"] == str(MAX_REQUESTS) and spec.env["WORKERS"] == str(WORKERS)

    with replicas(spec, 1) as [replica]:
        port = replica.host_port(spec.container_ports["http"])
        base = counted_posts(metrics_time(port, 1)[1])
        loops = [
            RequestLoop(port, "/predict", SEED, interval=0, max_requests=10**7, max_seconds=600 + RECYCLES)
            for _ in range(CLIENTS)
        ]
        for loop in loops:
            loop.start()
        checkpoints: dict[str, dict] = {}
        started = time.monotonic()
        try:
            for name, target in (("first", 100), ("last", RECYCLES)):
                # each request is counted by one worker; a worker is recycled after MAX_REQUESTS of them
                while sum(len(loop.results) for loop in loops) < (target + WORKERS) * MAX_REQUESTS or (
                    boots(replica.name) - WORKERS < target
                ):
                    assert replica.running(), replica.logs()[-3000:]
                    assert time.monotonic() - started < 600 + RECYCLES, "the load stalled"
                    time.sleep(3)
                seconds, _ = metrics_time(port)
                checkpoints[name] = {"recycles": boots(replica.name) - WORKERS, "metrics_s": seconds}
                checkpoints[name].update(folder_usage(replica.name))
        finally:
            results = [sent for loop in loops for sent in loop.stop()]
        time.sleep(1)
        _, text = metrics_time(port, 1)
        final = folder_usage(replica.name)
        logs = replica.logs()

    failed = [s.response for s in results if not is_prediction(s.response)]
    with capsys.disabled():
        print(f"\n{len(results)} requests, {len(failed)} failed; {json.dumps(checkpoints)}; end {json.dumps(final)}")
    assert not failed, f"{len(failed)} failed, e.g. {failed[:3]}\n{logs[-3000:]}"
    assert counted_posts(text) - base == len(results), "/metrics must count every request answered"
    first, last = checkpoints["first"], checkpoints["last"]
    assert first["recycles"] >= 100 and last["recycles"] >= RECYCLES, checkpoints
    # Flat: the same handful of files and bytes (a worker booting or exiting may be caught mid-way).
    assert last["files"] <= first["files"] + 3, checkpoints
    assert last["bytes"] <= first["bytes"] + 3 * 64 * 1024, checkpoints
    assert last["tmpfs_used"] <= first["tmpfs_used"] + 3 * 64 * 1024, checkpoints
    assert last["tmpfs_used"] < size_limit / 8, checkpoints
    # /metrics time: not growing with the recycles (generous: 2 shared cores, other tests running).
    assert last["metrics_s"] <= 2 * first["metrics_s"] + 0.02, checkpoints

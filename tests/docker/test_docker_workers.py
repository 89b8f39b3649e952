"""No CPU limit on a many-CPU node: the pod starts a bounded number of gunicorn workers.

Without `resources.limits.cpu` the downward API reports the node's allocatable CPUs; a chart that
took WORKERS from it would start one worker per node CPU inside the memory limit (32 on a 32-core
node) and be OOM-killed. Here the chart is rendered without a CPU limit, the pod spec is turned
into `docker run` with a node of 32 CPUs emulated for the downward API, and the gunicorn worker
processes inside the running container are counted.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from docker_settings import IMAGE, SEED, render_chart
from dockerpod import DOCKER, find_one, http_request, is_prediction, quantity, replicas, run, translate

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]
NODE_CPUS = 32  # the emulated node: what the downward API would report for limits.cpu without a limit


def gunicorn_workers(container: str) -> list[int]:
    """Host PIDs of the worker processes: children of the container's master (its PID 1)."""
    out = run([DOCKER, "top", container, "-eo", "pid,ppid,args"]).stdout.splitlines()[1:]
    procs = [(int(pid), int(ppid), args) for pid, ppid, args in (line.split(None, 2) for line in out)]
    pids = {pid for pid, _, _ in procs}
    masters = [pid for pid, ppid, _ in procs if ppid not in pids]
    assert len(masters) == 1, f"expected one master process, got {procs}"
    return [pid for pid, ppid, _ in procs if ppid == masters[0]]


def settled_workers(container: str, timeout: float = 60.0) -> list[int]:
    """The worker list once it has stayed the same for 3 s (workers boot one after the other)."""
    deadline = time.monotonic() + timeout
    last, since = gunicorn_workers(container), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = gunicorn_workers(container)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 3:
            return now
    return last


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"resources.limits.cpu": "null"}, "requests.cpu"),
        ({"resources.limits.cpu": "null", "resources.requests.cpu": "1500m"}, "requests.cpu"),
    ],
    ids=["requests-250m", "requests-1500m"],
)
def test_no_cpu_limit_starts_bounded_workers(
    image: str, helm: Path, values: dict[str, str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """No CPU limit, 32-CPU node: WORKERS is set explicitly and equals requests.cpu rounded up."""
    docs = render_chart(helm, **values)
    deployment = find_one(docs, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    resources = container["resources"]
    assert "cpu" not in resources.get("limits", {}), "this test is about pods without a CPU limit"
    bound = math.ceil(quantity(resources["requests"]["cpu"]))
    spec = translate(deployment, docs, pod_name="t-reviewserve-w", node_cpu_count=NODE_CPUS)
    assert spec.image == IMAGE == image
    assert "--cpus" not in spec.docker_args, "no CPU limit: no CFS quota either"

    with replicas(spec, 1) as [replica]:
        workers = settled_workers(replica.name)
        port = replica.host_port(spec.container_ports["http"])
        answer = http_request(port, "POST", "/predict", json.dumps(SEED).encode())
        logs = replica.logs()
    with capsys.disabled():
        cpu = resources["requests"]["cpu"]
        node = f"emulated node of {NODE_CPUS} CPUs"
        print(f"\nno CPU limit, {expected} {cpu} (bound {bound}), {node}: {len(workers)} workers")
    assert len(workers) == bound < NODE_CPUS, f"{len(workers)} workers for {expected}={bound}\n{logs[-3000:]}"
    assert is_prediction(answer), f"{answer}\n{logs[-3000:]}"
    # Set explicitly: the service's own default (usable CPUs) would depend on the node, not the pod spec.
    assert spec.env.get("WORKERS") == str(bound), f"WORKERS must be set explicitly to {bound}: {spec.env}"

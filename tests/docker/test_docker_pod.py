"""The image runs exactly as the rendered pod spec says, and stops as the kubelet stops it.

The chart is rendered with helm; the Deployment's container becomes a `docker run` with the same
user and groups, read-only root, emptyDirs as tmpfs, env (ConfigMap and downward API resolved),
command/args, port, CPU/memory limits, dropped capabilities and no-new-privileges. Its probes are
run with the paths, ports and timings of the manifest; then the kubelet's termination: preStop,
stop signal, terminationGracePeriodSeconds, with requests in flight.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest
from docker_settings import IMAGE, SEED, render_chart
from dockerpod import (
    HeldRequest,
    PodContainer,
    RequestLoop,
    Response,
    find_one,
    http_request,
    is_prediction,
    replicas,
    translate,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]
ERROR_LINE = re.compile(r'"level": "(ERROR|CRITICAL)"|\[(ERROR|CRITICAL)\]|^Traceback')


def app_port(spec: PodContainer) -> int:
    """The container port named http (the chart's convention), else its only port."""
    ports = spec.container_ports
    if "http" in ports:
        return ports["http"]
    assert len(set(ports.values())) == 1, f"cannot tell the app port among {ports}"
    return next(iter(ports.values()))


def test_image_runs_as_the_pod_spec_says(image: str, helm: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Start, probe, seed request, then preStop + SIGTERM with requests in flight: exit 0 in time."""
    docs = render_chart(helm)
    deployment = find_one(docs, "Deployment")
    spec = translate(deployment, docs, pod_name="t-reviewserve-0")
    assert spec.image == IMAGE == image, "the rendered Deployment must run the image under test"
    assert {"startup", "readiness", "liveness"} <= spec.probes.keys(), "the chart defines all three probes"
    port = app_port(spec)
    shutdown_delay = float(spec.env.get("SHUTDOWN_DELAY", "1"))

    with replicas(spec, 1) as [replica]:
        ready_after = time.monotonic() - replica.started_at
        with capsys.disabled():
            print(f"\n{' '.join(replica.docker_run_command())}\nready after {ready_after:.1f} s")
        host_port = replica.host_port(port)

        seed = http_request(host_port, "POST", "/predict", json.dumps(SEED).encode())
        assert is_prediction(seed), f"seed request: {seed}"

        loop = RequestLoop(host_port, "/predict", SEED, interval=0.1, max_requests=600, max_seconds=120)
        loop.start()
        time.sleep(2)
        held: list[HeldRequest] = []
        held_result: list[Response] = []

        def hold_request() -> None:
            # Headers and half the body go out before the signal; the rest only once gunicorn has
            # stopped accepting (SHUTDOWN_DELAY after SIGTERM): a request in flight across the drain.
            held.append(HeldRequest(host_port, "/predict", SEED))
            time.sleep(0.3)

        def finish_later() -> None:
            def finish() -> None:
                time.sleep(shutdown_delay + 1.0)
                held_result.append(held[0].finish())

            threading.Thread(target=finish, daemon=True).start()

        result = replica.stop_like_kubelet(before_signal=hold_request, after_signal=finish_later)
        time.sleep(0.5)
        sent = loop.stop()
        liveness_streak = replica.liveness_failures_before(result.signal_at)
        logs = replica.logs()

    deadline = time.monotonic() + 30
    while not held_result and time.monotonic() < deadline:
        time.sleep(0.1)
    before = [s for s in sent if s.sent < result.signal_at]
    failed = [(s.index, s.response.status, s.response.error) for s in before if not is_prediction(s.response)]
    with capsys.disabled():
        print(
            f"preStop {result.pre_stop_seconds:.1f} s, exit {result.exit_code} "
            f"after {result.total_seconds:.1f} s of {spec.grace_seconds:.0f} s grace; "
            f"{len(before)} requests before SIGTERM, {len(failed)} failed; {len(sent) - len(before)} after"
        )
    assert result.exited_in_time, f"not exited within terminationGracePeriodSeconds={spec.grace_seconds}\n{logs}"
    assert result.exit_code == 0, f"exit code {result.exit_code}\n{logs[-4000:]}"
    assert not result.oom_killed
    assert result.total_seconds <= spec.grace_seconds
    assert len(before) >= 20, "the request loop did not run steadily"
    assert not failed, f"requests sent before SIGTERM failed: {failed[:10]}\n{logs[-4000:]}"
    assert held_result and is_prediction(held_result[0]), f"in-flight request: {held_result}\n{logs[-4000:]}"
    liveness = spec.probes["liveness"]
    assert liveness_streak < liveness.failure_threshold, "the kubelet would have restarted the container"
    # Read-only root, non-root UID: nothing may fail from start to exit (e.g. a write outside the mounts).
    errors = [line for line in logs.splitlines() if ERROR_LINE.search(line)]
    assert not errors, "errors logged under the pod's constraints:\n" + "\n".join(errors)

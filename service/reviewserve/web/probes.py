"""Probes answered by the gunicorn master on ``HEALTH_PORT``, whatever the request workers are doing.

The request workers compute one request at a time, so a probe sent to them waits behind the model: under a
burst of large requests ``/healthz`` on the main port took seconds and the kubelet would have judged a busy
pod dead. The master does no request work; a thread in it answers (the stream consumer's
:class:`~reviewserve.stream.health.HealthServer`), from what the master knows:

- ``/healthz`` (liveness): 200 while at least one worker has sent its heartbeat within ``TIMEOUT`` (gunicorn's
  per-worker heartbeat file, the one its arbiter uses to abort stuck workers); 503 when no worker can serve:
  every one is stuck past ``TIMEOUT`` (until gunicorn has replaced them), or none is running for longer than
  :data:`NO_WORKER_GRACE_SECONDS` (a recycle's moment between a worker's exit and its replacement is not failure).
- ``/readyz`` (readiness): 503 while draining (SIGTERM), when the model was refused (the master preloads the
  app, so it holds the same state the workers do), or when not alive; else 200.
- ``/metrics``: the multiprocess metrics, as on the main port.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from prometheus_client import CollectorRegistry

from reviewserve.stream.health import HealthServer
from reviewserve.web.metricsdir import FoldAwareCollector
from reviewserve.web.state import ServiceState

log = logging.getLogger(__name__)

NO_WORKER_GRACE_SECONDS = 2.0


class WorkerWatch:
    """Liveness from the arbiter's workers and their heartbeat files (read-only, from the health thread)."""

    def __init__(self, arbiter: Any, timeout: float) -> None:
        self.arbiter = arbiter
        self.timeout = timeout
        self.last_alive = time.monotonic()  # the master has just started: its first workers are on their way

    def live_workers(self) -> tuple[int, int]:
        """(workers running, workers with a heartbeat within ``timeout``)."""
        for _ in range(3):
            try:
                workers = list(self.arbiter.WORKERS.values())
                break
            except RuntimeError:  # the master changed the table while we copied it
                continue
        else:
            return 0, 0
        now = time.monotonic()
        live = 0
        for worker in workers:
            try:
                # The heartbeat file's mtime is set to time.monotonic() by the worker (gunicorn's WorkerTmp).
                if now - worker.tmp.last_update() <= self.timeout:
                    live += 1
            except (OSError, ValueError):  # closed: the worker has just been reaped
                continue
        return len(workers), live

    def not_alive_reason(self) -> str | None:
        """Why the server cannot serve, or None."""
        running, live = self.live_workers()
        now = time.monotonic()
        if live:
            self.last_alive = now
            return None
        if not running:
            if now - self.last_alive <= NO_WORKER_GRACE_SECONDS:
                return None  # a worker has just exited; its replacement is being forked
            return "no worker running"
        return f"no live worker: none of {running} has sent a heartbeat within TIMEOUT ({self.timeout:g} s)"


def start_health_server(arbiter: Any, state: ServiceState, host: str, port: int) -> HealthServer | None:
    """Serve the probes on ``host:port`` from a thread of the master; None (logged) if the port is taken."""
    watch = WorkerWatch(arbiter, arbiter.timeout)

    def ready() -> str | None:
        return state.not_ready_reason() or watch.not_alive_reason()

    registry = CollectorRegistry()
    FoldAwareCollector(registry)  # what the main port's /metrics reads: live workers' files and the archive
    try:
        server = HealthServer(port, registry, alive=watch.not_alive_reason, ready=ready, host=host)
    except OSError as exc:
        # Serving matters more than its probes: the chart's probes then fail visibly and say why in the log.
        log.error("health port %s:%s unavailable: %s; probes answered on the main port only", host, port, exc)
        return None
    server.server.socket.set_inheritable(False)
    os.register_at_fork(after_in_child=server.server.socket.close)  # workers do not hold the probe port
    server.start()
    log.info("probes on %s:%s (/healthz, /readyz, /metrics)", host, server.port)
    return server

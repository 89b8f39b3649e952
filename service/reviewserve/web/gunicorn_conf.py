"""gunicorn configuration (``--config python:reviewserve.web.gunicorn_conf``), all from Settings.

Import order matters: PROMETHEUS_MULTIPROC_DIR must point at this server's own metrics folder before
prometheus_client is imported, which happens when the app is preloaded after this module runs.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from gunicorn.glogging import Logger

from reviewserve.logs import logging_config
from reviewserve.settings import get_settings

_settings = get_settings()
# prometheus_client chooses between in-process values and per-process files once, when it is first imported
# (metricsdir imports it): without the variable set by then, workers would write no files and /metrics would
# be empty. claim() below then points it at this server's own folder.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_settings.prometheus_multiproc_dir)

from reviewserve.web import balance, metricsdir  # noqa: E402, F401  (balance: its shared table must exist before the fork)
from reviewserve.writable import require_writable  # noqa: E402

_metrics_base = Path(_settings.prometheus_multiproc_dir)
require_writable(_metrics_base, "PROMETHEUS_MULTIPROC_DIR")  # a read-only mount: one line, not a traceback
# This server's own folder under PROMETHEUS_MULTIPROC_DIR; folders of stopped servers are removed.
metricsdir.claim(_metrics_base)

bind = f"{_settings.host}:{_settings.port}"
workers = _settings.workers
# gevent: reviewserve's own gevent worker (slow clients wait in the event loop; see web/worker.py).
worker_class = "reviewserve.web.worker.ReviewserveWorker" if _settings.worker_class == "gevent" else "gthread"
worker_connections = _settings.worker_connections
threads = _settings.threads
preload_app = True  # load and verify the model once, before fork; workers share its pages
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive
max_requests = _settings.max_requests
max_requests_jitter = _settings.max_requests_jitter


class AppOwnsAccessLog(Logger):
    """gunicorn's logger minus its access log (the app logs one JSON line per request itself).

    With ``logconfig_dict`` set, gunicorn would build its access-log fields for every request only for the
    ``gunicorn.access`` logger to drop them.
    """

    access_log_enabled = False


accesslog = None
logger_class = AppOwnsAccessLog
logconfig_dict = logging_config(_settings.log_level)
proc_name = "reviewserve"
# gunicorn >= 25.1 opens a runtime-control socket under $HOME by default: a management interface we do
# not use (workers are set by WORKERS), one shared path for every instance, and $HOME is read-only in the image.
control_socket_disable = True


def on_starting(server: Any) -> None:
    """Master start: clear the shutdown mark."""
    from reviewserve.web import lifecycle

    lifecycle.reset()


def when_ready(server: Any) -> None:
    """After preload, before fork: freeze the heap so workers keep sharing it; hook SIGTERM; serve the probes."""
    from reviewserve.web import lifecycle

    gc.collect()
    gc.freeze()  # objects allocated so far are never touched by the collector -> pages stay shared
    drain = server.handle_term
    delay = _settings.shutdown_delay

    def handle_term() -> None:
        # Readiness turns 503 now; keep serving `delay` seconds so load balancers notice, then drain.
        lifecycle.start_draining()
        server.log.info("SIGTERM: not ready; draining in %.1fs", delay)
        if delay:
            time.sleep(delay)
        drain()

    server.handle_term = handle_term
    if _settings.health_port:
        from reviewserve.web.probes import start_health_server

        start_health_server(server, server.app.wsgi().extensions["reviewserve"], _settings.host, _settings.health_port)
    _replace_workers_once_model_loads(server)


def _replace_workers_once_model_loads(server: Any) -> None:
    """If the preloaded model was refused, the master retries it (web/modelretry.py); once it loads, stop the
    workers gracefully: the arbiter forks their replacements from the master, which now holds the model."""
    service = server.app.wsgi().extensions["reviewserve"]

    def replace_workers() -> None:
        server.log.info("model loaded in the master: replacing the workers")
        for pid in list(server.WORKERS):
            server.kill_worker(pid, signal.SIGTERM)

    service.on_model_loaded.append(replace_workers)


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited (recycled, killed, timed out): fold its metric files into the archive."""
    metricsdir.fold(worker.pid)


def on_exit(server: Any) -> None:
    """Master exit: remove this server's metrics folder."""
    metricsdir.release()


def worker_abort(worker: Any) -> None:
    """A worker hit the timeout (SIGABRT): log where it was stuck."""
    logging.getLogger("reviewserve").error("worker %s aborted after timeout", worker.pid, stack_info=True)

"""The consumer's small HTTP port: ``/healthz``, ``/readyz``, ``/metrics`` (stdlib server in a thread).

- ``/healthz``: 200 while the consumer loop is alive (it has finished an iteration recently);
  503 when it is stuck, so the kubelet restarts it.
- ``/readyz``: 200 when the broker answers, the group exists and the sink can write; else 503
  with the reason.
- ``/metrics``: Prometheus text format.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)


class HealthServer:
    """A ThreadingHTTPServer on ``host:port`` in a daemon thread."""

    def __init__(
        self,
        port: int,
        registry: CollectorRegistry,
        alive: Callable[[], str | None],
        ready: Callable[[], str | None],
        host: str = "0.0.0.0",
    ) -> None:
        """``alive``/``ready`` return None when fine, else the reason (answered with 503)."""
        checks = {"/healthz": alive, "/readyz": ready}

        class Handler(BaseHTTPRequestHandler):
            server_version = "reviewserve-stream"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path in checks:
                    try:
                        reason = checks[path]()
                    except Exception as exc:  # a probe answers, it never raises
                        reason = f"{type(exc).__name__}: {exc}"
                    body = {"status": "ok"} if reason is None else {"status": "unavailable", "reason": reason}
                    self._send(200 if reason is None else 503, json.dumps(body).encode(), "application/json")
                else:
                    body = {"error": {"code": "not_found", "message": f"no such path: {path}"}}
                    self._send(404, json.dumps(body).encode(), "application/json")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # probes every few seconds: quiet
                log.debug("health %s", format % args)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="health", daemon=True)

    def start(self) -> None:
        """Serve in the background."""
        self.thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()

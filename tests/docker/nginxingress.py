"""A real nginx configured like ingress-nginx from a rendered Ingress, in front of Docker replicas.

The Ingress rules (host, path, pathType) become nginx server/location blocks; the backend is
followed through the Service to the container port, and the upstream lists the replicas'
published 127.0.0.1 ports. Proxy settings follow ingress-nginx's defaults (`proxy_next_upstream
error timeout`, 3 tries; a short connect timeout); `nginx.ingress.kubernetes.io/*` annotations of the
Ingress override them (the chart's: `error timeout http_503 non_idempotent`, 2 tries).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockerpod import LOOPBACK, Manifest

from tests.conftest import free_port

NGINX = os.environ.get("NGINX", shutil.which("nginx") or "/usr/sbin/nginx")
ANNOTATION = "nginx.ingress.kubernetes.io/"

# Defaults used unless an annotation says otherwise: ingress-nginx's (retries on error and timeout
# only, so a POST that reached a replica is never retried unless the Ingress says so), with a short
# connect timeout, as in the Deployment's rollout documentation.
DEFAULTS = {
    "proxy-next-upstream": "error timeout",
    "proxy-next-upstream-tries": "3",
    "proxy-next-upstream-timeout": "0",
    "proxy-connect-timeout": "2",
    "proxy-read-timeout": "60",
    "proxy-send-timeout": "60",
    "proxy-body-size": "1m",
}


@dataclass
class Route:
    """One Ingress path rule, already checked against the Service and the container port."""

    host: str
    path: str
    path_type: str
    container_port: int


def routes(ingress: Manifest, service: Manifest, container_ports: dict[str, int]) -> list[Route]:
    """The Ingress rules, each followed Ingress -> Service port -> container port.

    Fails when a backend names another Service, a port the Service does not have, or a targetPort
    the container does not expose: nginx would then route to nothing in a real cluster.
    """
    spec = ingress["spec"]
    class_name = spec.get("ingressClassName") or ingress["metadata"].get("annotations", {}).get(
        "kubernetes.io/ingress.class"
    )
    if class_name != "nginx":
        raise AssertionError(f"the Ingress is for class {class_name!r}; this test emulates ingress-nginx")
    service_name = service["metadata"]["name"]
    found: list[Route] = []
    for rule in spec.get("rules", []):
        for item in rule.get("http", {}).get("paths", []):
            backend = item["backend"]["service"]
            if backend["name"] != service_name:
                raise AssertionError(f"Ingress backend {backend['name']!r} is not the Service {service_name!r}")
            svc_port = _service_port(service, backend["port"])
            target = svc_port.get("targetPort", svc_port["port"])
            target_key = str(target)
            if target_key not in container_ports:
                raise AssertionError(f"Service targetPort {target!r} is not a port of the container")
            found.append(Route(rule.get("host") or "", item["path"], item["pathType"], container_ports[target_key]))
    if not found:
        raise AssertionError("the Ingress has no http paths")
    return found


def _service_port(service: Manifest, ref: dict[str, Any]) -> Manifest:
    for port in service["spec"]["ports"]:
        if ("name" in ref and port.get("name") == ref["name"]) or ("number" in ref and port["port"] == ref["number"]):
            return port
    raise AssertionError(f"Ingress backend port {ref} is not a port of the Service")


def _locations(route: Route) -> list[str]:
    """nginx location prefixes for an Ingress path, by pathType."""
    path = route.path
    if route.path_type == "Exact":
        return [f"= {path}"]
    if route.path_type == "Prefix" and path != "/":
        # Kubernetes Prefix matching is by path element: /api matches /api and /api/x, not /apix.
        base = path.rstrip("/")
        return [f"= {base}", f"{base}/"]
    return [path]  # Prefix "/" and ImplementationSpecific: nginx prefix match


def _duration(value: str) -> str:
    return value if value[-1:].isalpha() else f"{value}s"


class Nginx:
    """nginx run in the foreground from a generated config in `workdir`."""

    def __init__(self, workdir: Path, ingress: Manifest, rules: list[Route], upstream_ports: list[int]) -> None:
        self.workdir = workdir
        self.rules = rules
        self.port = free_port()
        annotations = ingress["metadata"].get("annotations") or {}
        self.settings = {key: str(annotations.get(ANNOTATION + key, default)) for key, default in DEFAULTS.items()}
        self.upstream_ports = list(upstream_ports)
        self.conf = workdir / "nginx.conf"
        self.access_log = workdir / "access.log"
        self.error_log = workdir / "error.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host_header(self) -> str:
        """A Host header that the first rule matches."""
        return self.rules[0].host or "localhost"

    def render(self) -> str:
        """The nginx.conf text for the current upstream ports."""
        s = self.settings
        lines = [
            "worker_processes 1;",
            "daemon off;",
            *(["user root root;"] if os.geteuid() == 0 else []),
            f"pid {self.workdir}/nginx.pid;",
            f"error_log {self.error_log} info;",
            # as ingress-nginx (max-worker-connections 16384): with 4096, a client flood of 4000 connections
            # plus their upstream connections ran out ("worker_connections are not enough": resets and 500s)
            "events { worker_connections 16384; }",
            "http {",
            "  log_format upstreams '$msec $status $request_method $request_uri "
            "upstream=$upstream_addr ustatus=$upstream_status';",
            f"  access_log {self.access_log} upstreams;",
            *(
                f"  {kind}_temp_path {self.workdir}/{kind}_temp;"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            ),
            f"  client_max_body_size {s['proxy-body-size']};",  # nginx size syntax, passed as is
            "  upstream reviewserve {",
            *(f"    server {LOOPBACK}:{port} max_fails=0;" for port in self.upstream_ports),
            # ingress-nginx keeps idle upstream connections (upstream-keepalive-connections 320, 60 s)
            "    keepalive 320;",
            "    keepalive_timeout 60s;",
            "  }",
        ]
        hosts: dict[str, list[Route]] = {}
        for route in self.rules:
            hosts.setdefault(route.host, []).append(route)
        if "" not in hosts:
            hosts[""] = []
        for host, host_routes in hosts.items():
            lines += [
                "  server {",
                f"    listen {LOOPBACK}:{self.port}{' default_server' if host == '' else ''};",
                f"    server_name {host or '_'};",
            ]
            seen = set()
            for route in host_routes:
                for location in _locations(route):
                    if location in seen:
                        continue
                    seen.add(location)
                    lines += [
                        f"    location {location} {{",
                        "      proxy_pass http://reviewserve;",
                        "      proxy_set_header Host $host;",
                        "      proxy_http_version 1.1;",
                        '      proxy_set_header Connection "";',
                        "      proxy_set_header X-Forwarded-For $remote_addr;",
                        f"      proxy_next_upstream {s['proxy-next-upstream']};",
                        f"      proxy_next_upstream_tries {s['proxy-next-upstream-tries']};",
                        f"      proxy_next_upstream_timeout {_duration(s['proxy-next-upstream-timeout'])};",
                        f"      proxy_connect_timeout {_duration(s['proxy-connect-timeout'])};",
                        f"      proxy_read_timeout {_duration(s['proxy-read-timeout'])};",
                        f"      proxy_send_timeout {_duration(s['proxy-send-timeout'])};",
                        "    }",
                    ]
            if "/" not in seen:
                lines.append("    location / { return 404; }")  # the default backend
            lines.append("  }")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _write(self) -> None:
        self.conf.write_text(self.render())
        check = subprocess.run(
            [NGINX, "-t", "-p", str(self.workdir), "-c", str(self.conf)],
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{check.stderr}\n{self.conf.read_text()}")

    def start(self) -> None:
        """Write the config and start nginx; return once it accepts connections."""
        self._write()
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.workdir), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited ({self.proc.returncode}):\n{self.error_log.read_text()}")
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("nginx did not accept connections within 15 s")

    def set_upstreams(self, ports: list[int]) -> None:
        """Change the upstream list and reload gracefully (what ingress-nginx does on an Endpoints change)."""
        self.upstream_ports = list(ports)
        self._write()
        assert self.proc is not None
        # Wait for the new worker: nginx logs "start worker process" for each one it starts.
        # Count before signalling, or a fast reload is counted as "before" and never seen.
        before = self.error_log.read_text().count("start worker process")
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while self.error_log.read_text().count("start worker process") <= before:
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not reload within 10 s")
            time.sleep(0.05)

    def upstreams_used(self) -> list[str]:
        """The upstream address column of every access-log line so far."""
        if not self.access_log.exists():
            return []
        return [
            part.removeprefix("upstream=")
            for line in self.access_log.read_text().splitlines()
            for part in line.split()
            if part.startswith("upstream=")
        ]

    def stop(self) -> None:
        """Stop nginx gracefully (SIGQUIT), killing it if it does not exit in 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

"""A real nginx configured like a Gateway from a rendered HTTPRoute: path matches and weighted backendRefs.

Each backendRef is followed HTTPRoute -> Service port -> container port; the upstream lists the replicas'
published 127.0.0.1 ports with nginx weights that give each Service its backendRef weight, shared evenly
by its ready replicas (what a Gateway does with the Service's endpoints). Proxy settings are those of
nginxingress.Nginx (retries on error/timeout/502/503 to another upstream, a short connect timeout).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dockerpod import LOOPBACK, Manifest
from nginxingress import Nginx, Route

PATH_TYPES = {"PathPrefix": "Prefix", "Exact": "Exact"}
SHARE = 12  # weights are multiplied by this before dividing among 1-4 replicas (their lcm), so they stay integers


def route_rules(route: Manifest, container_port: int) -> list[Route]:
    """The HTTPRoute's path matches as nginx location rules (every host name: the route's, else any)."""
    hosts = route["spec"].get("hostnames") or [""]
    found = []
    for rule in route["spec"]["rules"]:
        for match in rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]:
            path = match.get("path", {"type": "PathPrefix", "value": "/"})
            found += [Route(host, path["value"], PATH_TYPES[path["type"]], container_port) for host in hosts]
    return found


def backend_weights(
    route: Manifest, services: Mapping[str, Manifest], container_ports: Mapping[str, int]
) -> dict[str, int]:
    """Service name -> weight of the route's backendRefs (the same in every rule), checked down to a container port."""
    weights: dict[str, int] | None = None
    for rule in route["spec"]["rules"]:
        found = {}
        for ref in rule["backendRefs"]:
            service = services[ref["name"]]
            [port] = [p for p in service["spec"]["ports"] if p["port"] == ref["port"]]
            target = str(port.get("targetPort", port["port"]))
            assert target in container_ports, f"Service {ref['name']} targetPort {target} is not a container port"
            found[ref["name"]] = int(ref.get("weight", 1))
        assert weights is None or weights == found, "rules with different backends are not emulated"
        weights = found
    assert weights, "the HTTPRoute has no backendRefs"
    return weights


def mirror_backends(route: Manifest) -> set[str]:
    """Services of the route's RequestMirror filters (the same in every rule)."""
    found: set[str] | None = None
    for rule in route["spec"]["rules"]:
        names = {
            f["requestMirror"]["backendRef"]["name"] for f in rule.get("filters", []) if f["type"] == "RequestMirror"
        }
        assert found is None or found == names, "rules with different mirrors are not emulated"
        found = names
    return found or set()


class GatewayNginx(Nginx):
    """nginx with a weighted upstream: ``set_backends({service: (weight, [host ports])})`` reloads it.

    ``mirror_ports``: the RequestMirror filter, as nginx's ``mirror`` module does it: a copy of each request
    (body included) goes to these ports in a subrequest whose answer is discarded.
    """

    def __init__(self, workdir: Path, rules: list[Route], mirror_ports: list[int] | None = None) -> None:
        super().__init__(workdir, {"metadata": {}}, rules, [])
        self.weights: dict[int, int] = {}
        self.mirror_ports = list(mirror_ports or [])

    def _weighted(self, backends: Mapping[str, tuple[int, list[int]]]) -> dict[int, int]:
        weights = {}
        for weight, ports in backends.values():
            for port in ports:
                if weight:
                    weights[port] = weight * SHARE // len(ports)
        assert weights, "no backend with a weight and a ready replica"
        return weights

    def start_with(self, backends: Mapping[str, tuple[int, list[int]]]) -> None:
        """Start nginx sending to ``backends``."""
        self.weights = self._weighted(backends)
        self.upstream_ports = list(self.weights)
        self.start()

    def set_backends(self, backends: Mapping[str, tuple[int, list[int]]]) -> None:
        """Change the backends (a route or an endpoints change) and reload nginx gracefully."""
        self.weights = self._weighted(backends)
        self.set_upstreams(list(self.weights))

    def render(self) -> str:
        """Nginx's config with each upstream server's weight."""
        text = super().render()
        for port, weight in self.weights.items():
            text = text.replace(
                f"server {LOOPBACK}:{port} max_fails=0;", f"server {LOOPBACK}:{port} weight={weight} max_fails=0;"
            )
        if self.mirror_ports:
            servers = "".join(f"    server {LOOPBACK}:{port};\n" for port in self.mirror_ports)
            text = text.replace(
                "  upstream reviewserve {", f"  upstream shadow {{\n{servers}  }}\n  upstream reviewserve {{"
            )
            text = text.replace(
                "      proxy_pass http://reviewserve;", "      mirror /_mirror;\n      proxy_pass http://reviewserve;"
            )
            mirror = "    location = /_mirror { internal; proxy_pass http://shadow$request_uri; }\n"
            text = text.replace("    server_name ", mirror + "    server_name ")
        return text

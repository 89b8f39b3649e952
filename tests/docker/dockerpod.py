"""Run a container of a rendered Kubernetes pod spec under Docker, the way the kubelet would.

Everything the tests need to turn `helm template` output into `docker run` flags, to probe the
container with the manifest's probes, to stop it as the kubelet does (preStop, stop signal,
grace period) and to keep a bounded loop of requests going against 127.0.0.1 meanwhile.

Only what the chart uses is translated; anything else (a volume type, a fieldRef path, ...)
raises `Unsupported`, so a change in the chart fails the tests loudly instead of being ignored.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import math
import os
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import free_port

DOCKER = os.environ.get("DOCKER", "/usr/bin/docker")
LOOPBACK = "127.0.0.1"  # the only address request loops ever target

Manifest = dict[str, Any]


class Unsupported(Exception):
    """The manifest uses something this Docker translation does not emulate."""


# ---------------------------------------------------------------- manifests ---


def run(cmd: list[str], *, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; on failure raise with its output in the message."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
        )
    return proc


def helm_template(helm: Path, chart: Path, release: str, values: Mapping[str, str]) -> list[Manifest]:
    """Render the chart with `helm template` and return the parsed documents."""
    cmd = [str(helm), "template", release, str(chart)]
    for key, value in values.items():
        cmd += ["--set", f"{key}={value}"]
    out = run(cmd, timeout=120).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find_one(docs: Iterable[Manifest], kind: str, name: str | None = None) -> Manifest:
    """The single document of `kind` (and `name`, if given); fail if there are none or several."""
    found = [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]
    if len(found) != 1:
        raise AssertionError(f"expected exactly one {kind} {name or ''} in the rendering, found {len(found)}")
    return found[0]


_SUFFIXES = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
}  # fmt: skip


def quantity(value: str | int | float) -> Decimal:
    """Parse a Kubernetes resource quantity ("250m", "768Mi", "1", "1e3") into base units."""
    text = str(value).strip()
    match = re.fullmatch(r"([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)", text)
    if not match or (match.group(2) and match.group(2) not in _SUFFIXES):
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    number, suffix = match.groups()
    return Decimal(number) * Decimal(_SUFFIXES[suffix] if suffix else 1)


def node_cpus() -> int:
    """CPUs of this 'node' (what the downward API reports for limits.cpu when there is no limit)."""
    return os.cpu_count() or 1


def node_memory_bytes() -> int:
    """Memory of this 'node' in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def resource_field(container: Manifest, ref: Manifest, node_cpu_count: int | None = None) -> str:
    """Value of a downward-API resourceFieldRef, as the kubelet computes it: ceil(value / divisor).

    Without a limit the kubelet reports the node's allocatable amount: `node_cpu_count` emulates a
    node of that many CPUs (default: this machine's).
    """
    resource = ref["resource"]
    kind, _, name = resource.partition(".")
    value = container.get("resources", {}).get(kind, {}).get(name)
    if value is None and kind == "requests":
        value = container.get("resources", {}).get("limits", {}).get(name)  # requests default to limits
    if value is None:
        cpus = node_cpu_count if node_cpu_count is not None else node_cpus()
        value = cpus if name == "cpu" else node_memory_bytes() if name == "memory" else None
    if value is None:
        raise Unsupported(f"resourceFieldRef {resource}")
    divisor = quantity(ref.get("divisor", 1))
    return str(math.ceil(quantity(value) / divisor))


# ------------------------------------------------------------- translation ---


@dataclass
class Probe:
    """A kubelet probe (httpGet, tcpSocket or exec) with its timings, read from the manifest."""

    kind: str
    initial_delay: float
    period: float
    timeout: float
    failure_threshold: int
    success_threshold: int
    port: int | None = None  # container port
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)

    @classmethod
    def from_manifest(cls, spec: Manifest, ports: Mapping[str, int]) -> Probe:
        """Read a probe; named ports resolve through the container's ports."""

        def port_of(value: int | str) -> int:
            if isinstance(value, int) or str(value).isdigit():
                return int(value)
            if value not in ports:
                raise AssertionError(f"probe refers to port {value!r}, the container has {dict(ports)}")
            return ports[value]

        common = {
            "initial_delay": float(spec.get("initialDelaySeconds", 0)),
            "period": float(spec.get("periodSeconds", 10)),
            "timeout": float(spec.get("timeoutSeconds", 1)),
            "failure_threshold": int(spec.get("failureThreshold", 3)),
            "success_threshold": int(spec.get("successThreshold", 1)),
        }
        if "httpGet" in spec:
            get = spec["httpGet"]
            if get.get("scheme", "HTTP") != "HTTP":
                raise Unsupported(f"probe scheme {get['scheme']}")
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders", [])}
            return cls("httpGet", port=port_of(get["port"]), path=get.get("path", "/"), headers=headers, **common)
        if "tcpSocket" in spec:
            return cls("tcpSocket", port=port_of(spec["tcpSocket"]["port"]), **common)
        if "exec" in spec:
            return cls("exec", command=list(spec["exec"]["command"]), **common)
        raise Unsupported(f"probe {sorted(spec)}")


@dataclass
class PodContainer:
    """The `docker run` equivalent of one container of a rendered pod template."""

    image: str
    docker_args: list[str]  # everything between `docker run -d --name X` and the image
    command_args: list[str]  # after the image
    entrypoint: str | None
    container_ports: dict[str, int]  # port name (or str(number)) -> containerPort
    probes: dict[str, Probe]  # startup / readiness / liveness
    pre_stop: Manifest | None
    grace_seconds: float
    env: dict[str, str]
    user: str | None


def _merged_security_context(pod: Manifest, container: Manifest) -> Manifest:
    merged = dict(pod.get("securityContext") or {})
    merged.update(container.get("securityContext") or {})
    return merged


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes $(VAR) expansion: defined variables are replaced, $$ is a literal $."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(repl, value)


def container_env(
    pod_meta: Manifest, pod: Manifest, container: Manifest, docs: list[Manifest], node_cpu_count: int | None = None
) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom first, then env in order."""
    configmaps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d.get("kind") == "ConfigMap"}
    secrets: dict[str, dict[str, str]] = {}
    for d in docs:
        if d.get("kind") == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in (d.get("data") or {}).items()}
            data.update(d.get("stringData") or {})
            secrets[d["metadata"]["name"]] = data

    def source(kind: str, name: str, optional: bool) -> Mapping[str, str]:
        table = configmaps if kind == "configMap" else secrets
        if name not in table:
            if optional:
                return {}
            raise AssertionError(f"{kind} {name!r} is referenced by the Deployment but not rendered")
        return table[name]

    env: dict[str, str] = {}
    for item in container.get("envFrom", []):
        prefix = item.get("prefix", "")
        for kind in ("configMap", "secret"):
            ref = item.get(f"{kind}Ref")
            if ref:
                for key, value in source(kind, ref["name"], ref.get("optional", False)).items():
                    env[prefix + key] = str(value)
    for var in container.get("env", []):
        name = var["name"]
        if "value" in var:
            env[name] = expand(str(var["value"]), env)
            continue
        ref = var.get("valueFrom", {})
        if "configMapKeyRef" in ref or "secretKeyRef" in ref:
            kind = "configMap" if "configMapKeyRef" in ref else "secret"
            key_ref = ref[f"{kind}KeyRef"]
            data = source(kind, key_ref["name"], key_ref.get("optional", False))
            if key_ref["key"] not in data:
                if key_ref.get("optional", False):
                    continue
                raise AssertionError(f"{kind} {key_ref['name']!r} has no key {key_ref['key']!r}")
            env[name] = str(data[key_ref["key"]])
        elif "resourceFieldRef" in ref:
            res_ref = ref["resourceFieldRef"]
            target = container
            if res_ref.get("containerName"):
                target = next(c for c in pod["containers"] if c["name"] == res_ref["containerName"])
            env[name] = resource_field(target, res_ref, node_cpu_count)
        elif "fieldRef" in ref:
            env[name] = _field_ref(ref["fieldRef"]["fieldPath"], pod_meta, pod)
        else:
            env[name] = ""
    return env


def _field_ref(path: str, meta: Manifest, pod: Manifest) -> str:
    simple = {
        "metadata.name": meta.get("name", "pod"),
        "metadata.namespace": meta.get("namespace", "default"),
        "spec.nodeName": "docker-node",
        "spec.serviceAccountName": pod.get("serviceAccountName", "default"),
    }
    if path in simple:
        return str(simple[path])
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    raise Unsupported(f"fieldRef {path}")


def image_user(image: str) -> str:
    """The USER of an image (Config.User), "" for root by default."""
    return run([DOCKER, "image", "inspect", "--format", "{{.Config.User}}", image]).stdout.strip()


def write_secret_volume(secret: Manifest, docs: list[Manifest], target: Path, fs_group: int | None) -> Path:
    """Materialise a `secret` volume as the kubelet does: one file per item, defaultMode, group fsGroup.

    The Secret must be among `docs` (the tests add the ones a cluster would already hold).
    """
    found = [d for d in docs if d.get("kind") == "Secret" and d["metadata"]["name"] == secret["secretName"]]
    if not found:
        if secret.get("optional"):
            found = [{}]
        else:
            raise AssertionError(f"secret {secret['secretName']!r} is mounted by the Deployment but not present")
    data = {k: base64.b64decode(v) for k, v in (found[0].get("data") or {}).items()}
    data.update({k: str(v).encode() for k, v in (found[0].get("stringData") or {}).items()})
    items = secret.get("items") or [{"key": k, "path": k} for k in data]
    target.mkdir(parents=True, exist_ok=True)
    for item in items:
        if item["key"] not in data:
            raise AssertionError(f"secret {secret['secretName']!r} has no key {item['key']!r}")
        path = target / item["path"]
        path.write_bytes(data[item["key"]])
        os.chmod(path, int(item.get("mode", secret.get("defaultMode", 0o644))))
        if fs_group is not None and os.geteuid() == 0:
            os.chown(path, 0, fs_group)
    return target


def translate(
    deployment: Manifest,
    docs: list[Manifest],
    pod_name: str,
    container_name: str | None = None,
    node_cpu_count: int | None = None,
    secret_dir: Path | None = None,
) -> PodContainer:
    """Turn the Deployment's pod template (one container of it) into `docker run` flags.

    `node_cpu_count` emulates the node's allocatable CPUs, which the downward API reports for
    limits.cpu when the container has no CPU limit (default: this machine's CPU count).
    `secret` volumes are written under `secret_dir` and bind-mounted read-only (Unsupported without it).
    """
    template = deployment["spec"]["template"]
    pod_meta = dict(template.get("metadata") or {}, name=pod_name)
    pod = template["spec"]
    containers = pod["containers"]
    container = containers[0] if container_name is None else next(c for c in containers if c["name"] == container_name)
    if pod.get("initContainers"):
        raise Unsupported("initContainers")
    image = container["image"]
    args: list[str] = ["--hostname", pod_name]

    sc = _merged_security_context(pod, container)
    uid, gid = sc.get("runAsUser"), sc.get("runAsGroup")
    user: str | None = None
    if uid is not None:
        user = f"{uid}:{gid}" if gid is not None else str(uid)
    elif gid is not None:
        raise Unsupported("runAsGroup without runAsUser")
    if sc.get("runAsNonRoot"):
        # The kubelet refuses to start the container unless it can verify a non-zero UID.
        effective = str(uid) if uid is not None else image_user(image).split(":")[0]
        if not effective.isdigit() or int(effective) == 0:
            raise AssertionError(f"runAsNonRoot: the kubelet cannot verify a non-root UID (user {effective!r})")
    if user:
        args += ["--user", user]
    pod_sc = pod.get("securityContext") or {}
    for group in [pod_sc.get("fsGroup"), *(pod_sc.get("supplementalGroups") or [])]:
        if group is not None:
            args += ["--group-add", str(group)]
    if sc.get("privileged"):
        args.append("--privileged")
    if sc.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    caps = sc.get("capabilities") or {}
    for cap in caps.get("drop", []):
        args += ["--cap-drop", cap]
    for cap in caps.get("add", []):
        args += ["--cap-add", cap]
    seccomp = (sc.get("seccompProfile") or {}).get("type", "RuntimeDefault")
    if seccomp == "Unconfined":
        args += ["--security-opt", "seccomp=unconfined"]
    elif seccomp != "RuntimeDefault":  # Docker's default profile is the runtime default
        raise Unsupported(f"seccompProfile {seccomp}")

    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "secret" in volume and secret_dir is not None:
            if mount.get("subPath") or not mount.get("readOnly"):
                raise Unsupported("secret volume mounted with subPath or writable")
            source = write_secret_volume(volume["secret"], docs, secret_dir / mount["name"], pod_sc.get("fsGroup"))
            args += ["--mount", f"type=bind,src={source},dst={mount['mountPath']},readonly"]
            continue
        if "emptyDir" not in volume:
            raise Unsupported(f"volume type of {mount['name']}: {sorted(volume)}")
        if mount.get("subPath"):
            raise Unsupported("subPath on an emptyDir")
        options = ["rw", "mode=1777"]  # an emptyDir is world-writable
        size = (volume["emptyDir"] or {}).get("sizeLimit")
        if size:
            options.append(f"size={int(quantity(size))}")
        args += ["--tmpfs", f"{mount['mountPath']}:{','.join(options)}"]

    resources = container.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    if "cpu" in limits:
        args += ["--cpus", format(quantity(limits["cpu"]).normalize(), "f")]
    if "memory" in limits:
        mem = int(quantity(limits["memory"]))
        args += ["--memory", f"{mem}b", "--memory-swap", f"{mem}b"]  # no swap, as the kubelet sets it
    cpu_request = requests.get("cpu", limits.get("cpu"))
    if cpu_request is not None:  # the kubelet's cpu.shares for the request
        args += ["--cpu-shares", str(max(2, int(quantity(cpu_request) * 1024)))]

    ports: dict[str, int] = {}
    for port in container.get("ports", []):
        if port.get("protocol", "TCP") != "TCP":
            raise Unsupported(f"port protocol {port['protocol']}")
        ports[str(port["containerPort"])] = int(port["containerPort"])
        if port.get("name"):
            ports[port["name"]] = int(port["containerPort"])

    env = container_env(pod_meta, pod, container, docs, node_cpu_count)
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    if container.get("workingDir"):
        args += ["--workdir", container["workingDir"]]

    command = [expand(c, env) for c in container.get("command", [])]
    cmd_args = [expand(a, env) for a in container.get("args", [])]
    entrypoint = None
    after_image: list[str] = []
    if command:
        entrypoint, after_image = command[0], command[1:] + cmd_args
    elif cmd_args:
        after_image = cmd_args

    probes = {
        kind: Probe.from_manifest(container[f"{kind}Probe"], ports)
        for kind in ("startup", "readiness", "liveness")
        if container.get(f"{kind}Probe")
    }
    return PodContainer(
        image=image,
        docker_args=args,
        command_args=after_image,
        entrypoint=entrypoint,
        container_ports=ports,
        probes=probes,
        pre_stop=((container.get("lifecycle") or {}).get("preStop")),
        grace_seconds=float(pod.get("terminationGracePeriodSeconds", 30)),
        env=env,
        user=user,
    )


# --------------------------------------------------------------- requests ---


@dataclass
class Response:
    """What came back for one HTTP request (status None: no response, see error)."""

    status: int | None
    body: bytes = b""
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Response:
    """One request on a new connection to 127.0.0.1:port (Connection: close)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        hdrs = {"Connection": "close", **(headers or {})}
        if body is not None:
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return Response(resp.status, resp.read(), headers=dict(resp.getheaders()))
    except (OSError, http.client.HTTPException) as exc:
        return Response(None, error=f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def is_prediction(resp: Response) -> bool:
    """True for a 200 response whose JSON body carries a "prediction"."""
    if resp.status != 200:
        return False
    try:
        return resp.json().get("prediction") in {"positive", "negative"}
    except ValueError:
        return False


@dataclass
class Sent:
    """One request of a RequestLoop: when it was sent and finished, and what came back."""

    index: int
    sent: float
    done: float
    response: Response


class RequestLoop(threading.Thread):
    """A steady, bounded loop of POST requests to 127.0.0.1 (count and time both capped)."""

    def __init__(
        self,
        port: int,
        path: str,
        payload: Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        interval: float = 0.1,
        max_requests: int = 1000,
        max_seconds: float = 120.0,
        timeout: float = 15.0,
    ) -> None:
        super().__init__(daemon=True, name=f"request-loop-{port}")
        self.port, self.path, self.headers = port, path, dict(headers or {})
        self.body = json.dumps(payload).encode()
        self.interval, self.max_requests, self.max_seconds, self.timeout = (
            interval,
            max_requests,
            max_seconds,
            timeout,
        )
        self.results: list[Sent] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        """Send requests one after the other, `interval` apart, until stopped or a cap is hit."""
        start = time.monotonic()
        for index in range(self.max_requests):
            if self._stop_event.is_set() or time.monotonic() - start > self.max_seconds:
                break
            sent = time.monotonic()
            resp = http_request(self.port, "POST", self.path, self.body, headers=self.headers, timeout=self.timeout)
            self.results.append(Sent(index, sent, time.monotonic(), resp))
            self._stop_event.wait(max(0.0, self.interval - (time.monotonic() - sent)))

    def stop(self) -> list[Sent]:
        """Stop the loop, wait for its last request, and return every result."""
        self._stop_event.set()
        self.join(self.timeout + 5)
        return list(self.results)


class HeldRequest:
    """A POST whose body is sent in two parts, so it is in flight across a moment in between."""

    def __init__(self, port: int, path: str, payload: Mapping[str, Any], timeout: float = 30.0) -> None:
        body = json.dumps(payload).encode()
        self._rest = body[len(body) // 2 :]
        self.sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        self.sock.sendall(head + body[: len(body) // 2])

    def finish(self) -> Response:
        """Send the rest of the body and read the whole response."""
        try:
            self.sock.sendall(self._rest)
            chunks = []
            while chunk := self.sock.recv(65536):
                chunks.append(chunk)
        except OSError as exc:
            return Response(None, error=f"{type(exc).__name__}: {exc}")
        finally:
            self.sock.close()
        raw = b"".join(chunks)
        if not raw:
            return Response(None, error="connection closed without a response")
        head, _, body = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if b"transfer-encoding: chunked" in head.lower():
            body = _dechunk(body)
        return Response(status, body)


def _dechunk(data: bytes) -> bytes:
    out, rest = b"", data
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


# ------------------------------------------------------------------- pods ---


@dataclass
class ProbeResult:
    """One probe attempt."""

    at: float
    ok: bool
    detail: str


@dataclass
class StopResult:
    """How a kubelet-style termination went."""

    pre_stop_seconds: float
    signal_at: float  # monotonic time the stop signal was sent
    exited_in_time: bool
    total_seconds: float  # from the start of termination to exit (or to the grace deadline)
    exit_code: int | None
    oom_killed: bool


class Replica:
    """One pod of the Deployment, run as a Docker container and handled like the kubelet would."""

    def __init__(self, spec: PodContainer, name: str | None = None) -> None:
        self.spec = spec
        self.name = name or f"reviewserve-test-{uuid.uuid4().hex[:10]}"
        self.host_ports = {port: free_port() for port in set(spec.container_ports.values())}
        self.started_at = 0.0
        self.probe_log: dict[str, list[ProbeResult]] = {}
        self._monitor_stop = threading.Event()
        self._monitors: list[threading.Thread] = []

    def docker_run_command(self) -> list[str]:
        """The full `docker run` command line."""
        cmd = [DOCKER, "run", "--detach", "--name", self.name, *self.spec.docker_args]
        for container_port, host_port in sorted(self.host_ports.items()):
            cmd += ["--publish", f"{LOOPBACK}:{host_port}:{container_port}/tcp"]
        if self.spec.entrypoint is not None:
            cmd += ["--entrypoint", self.spec.entrypoint]
        return [*cmd, self.spec.image, *self.spec.command_args]

    def start(self) -> None:
        """`docker run` the container."""
        run(self.docker_run_command(), timeout=60)
        self.started_at = time.monotonic()

    def host_port(self, container_port: int | str) -> int:
        """The 127.0.0.1 port published for a container port (number or name)."""
        port = container_port if isinstance(container_port, int) else self.spec.container_ports[container_port]
        return self.host_ports[port]

    def probe_once(self, probe: Probe) -> ProbeResult:
        """Run a probe once, with the kubelet's success rule (HTTP 200-399, TCP connect, exit 0)."""
        now = time.monotonic()
        if probe.kind == "httpGet":
            assert probe.port is not None
            headers = {"User-Agent": "kube-probe/1.33", **probe.headers}
            resp = http_request(self.host_port(probe.port), "GET", probe.path, headers=headers, timeout=probe.timeout)
            ok = resp.status is not None and 200 <= resp.status < 400
            return ProbeResult(now, ok, f"{probe.path} -> {resp.status or resp.error}")
        if probe.kind == "tcpSocket":
            assert probe.port is not None
            try:
                with socket.create_connection((LOOPBACK, self.host_port(probe.port)), timeout=probe.timeout):
                    return ProbeResult(now, True, "connected")
            except OSError as exc:
                return ProbeResult(now, False, str(exc))
        proc = subprocess.run(
            [DOCKER, "exec", self.name, *probe.command], capture_output=True, text=True,
            timeout=probe.timeout + 10, check=False,
        )  # fmt: skip
        return ProbeResult(now, proc.returncode == 0, f"exit {proc.returncode}")

    def wait_until_ready(self) -> None:
        """Probe like the kubelet: startupProbe until it succeeds, then readinessProbe.

        Raises AssertionError when the kubelet would restart the container (startup probe
        failureThreshold reached) or the pod would not become ready in its readiness budget.
        """
        probes = self.spec.probes
        startup = probes.get("startup")
        if startup:
            self._wait_probe("startup", startup, self.started_at + startup.initial_delay, startup.failure_threshold)
        readiness = probes.get("readiness")
        if readiness:
            first = max(time.monotonic(), self.started_at + readiness.initial_delay)
            budget = readiness.failure_threshold if startup else _attempts_before_liveness_kill(probes, readiness)
            self._wait_probe("readiness", readiness, first, budget, successes=readiness.success_threshold)

    def _wait_probe(self, kind: str, probe: Probe, first_at: float, attempts: int, successes: int = 1) -> None:
        log = self.probe_log.setdefault(kind, [])
        time.sleep(max(0.0, first_at - time.monotonic()))
        streak = 0
        for _ in range(attempts + successes - 1):
            result = self.probe_once(probe)
            log.append(result)
            streak = streak + 1 if result.ok else 0
            if streak >= successes:
                return
            if not self.running():
                break
            time.sleep(max(0.0, result.at + probe.period - time.monotonic()))
        raise AssertionError(
            f"{kind}Probe did not succeed within {attempts} attempts every {probe.period}s: "
            f"{[r.detail for r in log[-5:]]}\n--- container log ---\n{self.logs()[-4000:]}"
        )

    def start_probe_monitors(self) -> None:
        """Keep running the liveness and readiness probes at their periods, as the kubelet does."""
        for kind in ("liveness", "readiness"):
            probe = self.spec.probes.get(kind)
            if probe:
                thread = threading.Thread(target=self._monitor, args=(kind, probe), daemon=True)
                thread.start()
                self._monitors.append(thread)

    def _monitor(self, kind: str, probe: Probe) -> None:
        log = self.probe_log.setdefault(f"{kind}-monitor", [])
        while not self._monitor_stop.wait(probe.period):
            log.append(self.probe_once(probe))

    def stop_probe_monitors(self) -> None:
        """Stop the background probes."""
        self._monitor_stop.set()
        for thread in self._monitors:
            thread.join(30)

    def liveness_failures_before(self, deadline: float) -> int:
        """Longest streak of failed liveness probes before `deadline` (monotonic)."""
        longest = streak = 0
        for result in self.probe_log.get("liveness-monitor", []):
            if result.at >= deadline:
                break
            streak = 0 if result.ok else streak + 1
            longest = max(longest, streak)
        return longest

    def running(self) -> bool:
        """Whether the container is running."""
        proc = run([DOCKER, "inspect", "--format", "{{.State.Running}}", self.name], check=False)
        return proc.stdout.strip() == "true"

    def logs(self) -> str:
        """The container's stdout and stderr."""
        proc = run([DOCKER, "logs", self.name], check=False, timeout=30)
        return proc.stdout + proc.stderr

    def stop_like_kubelet(
        self,
        on_terminating: Callable[[], None] | None = None,
        before_signal: Callable[[], None] | None = None,
        after_signal: Callable[[], None] | None = None,
    ) -> StopResult:
        """Terminate as the kubelet does: preStop hook, then the stop signal, within the grace period.

        `on_terminating` runs when termination starts (what the Endpoints controller does at the same
        moment: take the pod out of the Service); `before_signal` after the preStop hook, right before
        the stop signal; `after_signal` right after it. The container is SIGKILLed if it has not exited
        when terminationGracePeriodSeconds (counted from the start of preStop) runs out.
        """
        grace = self.spec.grace_seconds
        start = time.monotonic()
        if on_terminating:
            on_terminating()
        hook = self.spec.pre_stop or {}
        if "exec" in hook:
            # A failing hook would skip the delay that lets endpoints go: treat it as an error.
            run([DOCKER, "exec", self.name, *hook["exec"]["command"]], timeout=grace)
        elif "sleep" in hook:  # the native sleep action (Kubernetes >= 1.30)
            time.sleep(float(hook["sleep"]["seconds"]))
        elif "httpGet" in hook:
            get = hook["httpGet"]
            port = get["port"] if isinstance(get["port"], int) else self.spec.container_ports[get["port"]]
            http_request(self.host_port(port), "GET", get.get("path", "/"), timeout=grace)
        elif hook:
            raise Unsupported(f"preStop {sorted(hook)}")
        pre_stop_seconds = time.monotonic() - start
        signal = run([DOCKER, "inspect", "--format", "{{.Config.StopSignal}}", self.name]).stdout.strip()
        if before_signal:
            before_signal()
        signal_at = time.monotonic()
        run([DOCKER, "kill", "--signal", signal or "SIGTERM", self.name])
        if after_signal:
            after_signal()
        remaining = max(2.0, grace - (time.monotonic() - start))  # the kubelet grants at least 2 s more
        try:
            subprocess.run([DOCKER, "wait", self.name], capture_output=True, timeout=remaining, check=False)
            exited = True
        except subprocess.TimeoutExpired:
            exited = False
        total = time.monotonic() - start
        if not exited:
            run([DOCKER, "kill", "--signal", "SIGKILL", self.name], check=False)
            return StopResult(pre_stop_seconds, signal_at, False, total, None, False)
        state = json.loads(run([DOCKER, "inspect", "--format", "{{json .State}}", self.name]).stdout)
        return StopResult(pre_stop_seconds, signal_at, True, total, int(state["ExitCode"]), bool(state["OOMKilled"]))

    def remove(self) -> None:
        """Remove the container, whatever its state."""
        self.stop_probe_monitors()
        run([DOCKER, "rm", "--force", "--volumes", self.name], check=False, timeout=60)


def _attempts_before_liveness_kill(probes: Mapping[str, Probe], readiness: Probe) -> int:
    """Without a startup probe, readiness may take until liveness would restart the container."""
    liveness = probes.get("liveness")
    window = liveness.initial_delay + liveness.period * liveness.failure_threshold if liveness else 300.0
    return max(readiness.failure_threshold, math.ceil(window / readiness.period))


@contextlib.contextmanager
def replicas(spec: PodContainer, count: int) -> Iterator[list[Replica]]:
    """Start `count` replicas, wait until all are ready (probes), and remove them afterwards."""
    started: list[Replica] = []
    try:
        for _ in range(count):
            replica = Replica(spec)
            started.append(replica)
            replica.start()
        for replica in started:
            replica.wait_until_ready()
            replica.start_probe_monitors()
        yield started
    finally:
        for replica in started:
            replica.remove()

"""Run Debian's wrk with a generated Lua script: POST bodies, latency percentiles as JSON from ``done()``."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

WRK = shutil.which("wrk") or "/usr/bin/wrk"
MARK = "WRK_JSON "
PERCENTILES = (50, 75, 90, 99, 99.9)

# done() runs after every thread has stopped; latency is wrk's per-request histogram (microseconds).
_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  local p = {}
  for _, q in ipairs({%(percentiles)s}) do
    table.insert(p, string.format('"%%s": %%d', tostring(q), latency:percentile(q)))
  end
  io.write(string.format(
    '%(mark)s{"requests": %%d, "duration_us": %%d, "bytes": %%d, "connect": %%d, "read": %%d, "write": %%d, ' ..
    '"status": %%d, "timeout": %%d, "latency_mean_us": %%.1f, "latency_max_us": %%d, "percentiles_us": {%%s}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, table.concat(p, ", ")))
end
"""


def lua_string(value: str) -> str:
    """A Lua string literal for any text (bytes outside printable ASCII as decimal escapes)."""
    out = []
    for byte in value.encode():
        char = chr(byte)
        out.append(char if 32 <= byte < 127 and char not in '"\\' else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def lua_script(
    requests: list[tuple[str, str]], content_type: str = "application/json", headers: dict[str, str] | None = None
) -> str:
    """A wrk script POSTing ``(path, body)`` pairs in turn (one pair: wrk's static request, no per-request Lua)."""
    head = f'wrk.method = "POST"\nwrk.headers["Content-Type"] = {lua_string(content_type)}\n'
    for name, value in (headers or {}).items():
        head += f"wrk.headers[{lua_string(name)}] = {lua_string(value)}\n"
    if len(requests) == 1:
        path, body = requests[0]
        head += f"wrk.path = {lua_string(path)}\nwrk.body = {lua_string(body)}\n"
    else:
        items = ",\n".join(f"  wrk.format(nil, {lua_string(p)}, nil, {lua_string(b)})" for p, b in requests)
        head += (
            "local reqs = nil\nlocal i = 0\n"
            f"init = function(args)\n reqs = {{\n{items}\n }}\nend\n"
            "request = function()\n  i = i % #reqs + 1\n  return reqs[i]\nend\n"
        )
    done = _DONE % {"percentiles": ", ".join(str(q) for q in PERCENTILES), "mark": MARK}
    return head + done


@dataclass
class WrkResult:
    """One wrk run."""

    connections: int
    seconds: float
    requests: int
    rps: float
    errors_status: int  # non-2xx/3xx responses
    errors_socket: int  # connect + read + write + timeout
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    max_ms: float

    @property
    def errors(self) -> int:
        return self.errors_status + self.errors_socket


def run_wrk(
    url: str,
    requests: list[tuple[str, str]],
    connections: int,
    seconds: float,
    threads: int = 1,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
) -> WrkResult:
    """``wrk -t threads -c connections -d seconds`` against ``url`` (scheme://host:port) with the given bodies."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bench.lua"
        script.write_text(lua_script(requests, headers=headers))
        command = [
            WRK,
            f"-t{min(threads, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={max(1, round(timeout))}s",
            "-s",
            str(script),
            url.rstrip("/") + requests[0][0],
        ]
        out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + timeout + 30)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith(MARK)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result (exit {out.returncode}): {out.stdout}\n{out.stderr}")
    data = json.loads(line[len(MARK) :])
    duration = data["duration_us"] / 1e6
    pct = {float(k): v / 1000 for k, v in data["percentiles_us"].items()}
    return WrkResult(
        connections=connections,
        seconds=duration,
        requests=data["requests"],
        rps=data["requests"] / duration if duration else 0.0,
        errors_status=data["status"],
        errors_socket=data["connect"] + data["read"] + data["write"] + data["timeout"],
        p50_ms=pct[50.0],
        p90_ms=pct[90.0],
        p99_ms=pct[99.0],
        p999_ms=pct[99.9],
        mean_ms=data["latency_mean_us"] / 1000,
        max_ms=data["latency_max_us"] / 1000,
    )

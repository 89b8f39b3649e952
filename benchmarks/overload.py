"""``make bench-overload``: capacity kept under overload, measured with an open-loop generator.

    .venv/bin/python -m benchmarks.overload [--seconds 30] [--multipliers 1,1.5,2,4] [--smoke]

For each server (reviewserve as ``make run`` starts it, the plain gunicorn stack, MLServer; one at a
time, on the same model): its capacity is measured closed-loop first (wrk, c connections, single
reviews cycling through the corpus), then one open-loop run (benchmarks/openloop.py, in its own
process) offers 1.0x that rate, then each overload multiplier in turn, each followed by a stretch at
1.0x to see how fast latency recovers. A thread polls the server's readiness endpoint on a new
connection every second during the run, as the kubelet would. Writes benchmarks/results/overload.json
and the "Overload" section of docs/benchmarks.md with its plot.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import click

from benchmarks import machine, openloop, overload_report, report, servers, texts, venvs
from benchmarks.wrk import run_wrk

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ALL_SERVERS = ("reviewserve", "plain", "mlserver")


class ReadyPoller(threading.Thread):
    """GET a readiness URL on a new connection every ``period`` s with ``timeout``, as the kubelet probes."""

    def __init__(self, url: str, period: float, timeout: float) -> None:
        super().__init__(daemon=True)
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
        self.period, self.timeout = period, timeout
        self.results: list[list[float]] = []  # [epoch seconds, status (0 = no answer in time), seconds]
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            began, started = time.time(), time.perf_counter()
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                conn.request("GET", self.path, headers={"User-Agent": "kube-probe/1.33"})
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
            finally:
                conn.close()
            took = time.perf_counter() - started
            self.results.append([began, status, took])
            self._stop_event.wait(max(0.0, self.period - took))

    def stop(self) -> list[list[float]]:
        """Stop polling and return what was seen."""
        self._stop_event.set()
        self.join(self.timeout + self.period + 1)
        return self.results


def _check_ready(url: str, seconds: float = 10.0) -> None:
    """Fail at once when the readiness endpoint does not answer 200 (e.g. its port was taken: see the server log)."""
    parts = urlsplit(url)
    deadline = time.monotonic() + seconds
    last = ""
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=2)
        try:
            conn.request("GET", parts.path)
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                return
            last = str(response.status)
        except (OSError, http.client.HTTPException) as exc:
            last = repr(exc)
        finally:
            conn.close()
        time.sleep(0.2)
    raise RuntimeError(f"readiness {url} does not answer 200 ({last}); see the servers log")


def schedule(capacity: float, multipliers: list[float], seconds: float, recovery: float) -> str:
    """The open-loop schedule: 1.0x, then each multiplier above 1 followed by a recovery stretch at 1.0x."""
    phases = []
    for m in multipliers:
        phases.append(f"{capacity * m:.1f}:{seconds:g}:{m:g}x")
        if m > 1:
            phases.append(f"{capacity:.1f}:{recovery:g}:after {m:g}x")
    return ",".join(phases)


def split_cpus(spec: str, available: set[int]) -> tuple[frozenset[int] | None, frozenset[int]]:
    """(the server's CPUs or None for no pinning, the generator's CPUs) from ``--server-cpus``.

    Pinned apart, the load generator (Python, up to a core at the highest rates) does not take the server's CPU
    time: the server runs as in a pod of that many CPUs (reviewserve's ``WORKERS`` default follows), the
    generator as on another machine.
    """
    cpus = sorted(available)
    if spec == "all" or (spec == "auto" and len(cpus) < 2):
        return None, frozenset(cpus)
    if spec == "auto":
        server = frozenset(cpus[len(cpus) // 2 :])
    else:
        try:
            server = frozenset(int(c) for c in spec.split(","))
        except ValueError as exc:
            raise click.BadParameter(f"--server-cpus {spec!r}: a comma-separated list of CPUs, auto or all") from exc
    others = frozenset(cpus) - server
    if not server <= set(cpus) or not others:
        raise click.BadParameter(f"--server-cpus {spec}: must be some, not all, of the CPUs {cpus}")
    return server, others


def _target(name: str, smoke: bool, work: Path, log: Path, sample: str, batch: list[str]) -> servers.Target:
    if name == "reviewserve":
        return servers.reviewserve(sample, batch, work)
    joblib_file = servers.export.export_joblib(servers.MODEL_DIR, work)
    python = servers.PROJECT_PYTHON if smoke else venvs.ensure_venv(name, servers.PEER_STACKS[name], log)
    if name == "plain":
        return servers.plain(python, joblib_file, sample, batch)
    return servers.mlserver(python, joblib_file, work, sample, batch)


def measure(
    target: servers.Target, corpus: list[str], opts: dict, log: Path, work: Path
) -> dict:  # fmt: skip
    """Capacity (closed loop), then the open-loop schedule with readiness polled; raw records kept."""
    requests = target.singles(corpus)
    bodies = work / f"bodies-{target.name}.json"  # raw records stay in --work, next to the bodies
    bodies.write_text(json.dumps([body for _, body in requests]))
    with servers.started(target, log):
        if target.ready_url:
            _check_ready(target.ready_url)
        run_wrk(target.url, requests, opts["capacity_connections"], opts["warmup"])
        closed = run_wrk(target.url, requests, opts["capacity_connections"], opts["capacity_seconds"])
        capacity = closed.rps
        plan = schedule(capacity, opts["multipliers"], opts["seconds"], opts["recovery"])
        click.echo(f"  {target.name}: capacity {capacity:.0f} req/s (wrk c={opts['capacity_connections']}); {plan}")
        poller = None
        if target.ready_url:
            poller = ReadyPoller(target.ready_url, opts["ready_period"], opts["ready_timeout"])
            poller.start()
        out = work / f"openloop-{target.name}-{time.strftime('%H%M%S')}.json"
        command = [
            sys.executable, "-m", "benchmarks.openloop", "--url", target.url, "--path", requests[0][0],
            "--bodies", str(bodies), "--schedule", plan, "--timeout", str(opts["timeout"]),
            "--max-connections", str(opts["max_connections"]), "--clock", opts["clock"], "--out", str(out),
        ]  # fmt: skip
        total = sum(float(p.split(":")[1]) for p in plan.split(","))
        try:
            subprocess.run(command, cwd=ROOT, check=True, timeout=total + opts["timeout"] + 120)
        finally:  # the polling thread ends with the run, failed or not
            ready = poller.stop() if poller else []
    return {
        "server": target.name,
        "label": target.label,
        "versions": target.versions,
        "capacity": {
            "rps": capacity, "p99_ms": closed.p99_ms, "connections": opts["capacity_connections"],
            "errors": closed.errors,
        },
        "ready_url": target.ready_url,
        "ready": ready,
        "openloop": json.loads(out.read_text()),
    }


@click.command(help=__doc__)
@click.option("--seconds", type=float, default=30.0, show_default=True, help="Seconds offered at each load.")
@click.option("--recovery", type=float, default=10.0, show_default=True, help="Seconds at 1.0x after each overload.")
@click.option("--multipliers", default="1,1.5,2,4", show_default=True, help="Loads, as multiples of capacity.")
@click.option("--servers", "server_names", default=",".join(ALL_SERVERS), show_default=True)
@click.option("--capacity-seconds", type=float, default=10.0, show_default=True, help="Closed-loop capacity run.")
@click.option("--capacity-connections", type=int, default=8, show_default=True, help="wrk -c for the capacity.")
@click.option("--warmup", type=float, default=2.0, show_default=True)
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Client timeout per request (s).")
@click.option("--max-connections", type=int, default=4000, show_default=True, help="Generator's connection cap.")
@click.option("--ready-period", type=float, default=1.0, show_default=True, help="Readiness poll period (s).")
@click.option("--ready-timeout", type=float, default=2.0, show_default=True, help="Readiness poll timeout (s).")
@click.option(
    "--server-cpus",
    default="auto",
    show_default=True,
    help="CPUs the server is pinned to, e.g. '1' or '2,3'; the generator, wrk and the probes get the others. "
    "auto: the upper half of this process's CPUs when it has 2 or more; all: no pinning.",
)
@click.option(
    "--clock", type=click.Choice(openloop.CLOCKS), default="tick", show_default=True,
    help="The generator's clock: what is due leaves every 1 ms (tick), or each request at its due time "
    "(timerfd; see benchmarks/openloop.py).",
)  # fmt: skip
@click.option("--rounds", type=int, default=2, show_default=True, help="Rounds; the server order alternates.")
@click.option("--smoke", is_flag=True, help="Seconds-long: 2 s loads, reviewserve and plain from the project venv.")
@click.option("--results", type=click.Path(path_type=Path), default=RESULTS / "overload.json", show_default=True)
@click.option("--doc", type=click.Path(path_type=Path), default=ROOT / "docs" / "benchmarks.md", show_default=True)
@click.option("--work", type=click.Path(path_type=Path), default=ROOT / ".bench" / "overload", show_default=True)
def main(
    seconds: float, recovery: float, multipliers: str, server_names: str, capacity_seconds: float,
    capacity_connections: int, warmup: float, timeout: float, max_connections: int, ready_period: float,
    ready_timeout: float, server_cpus: str, clock: str, rounds: int, smoke: bool, results: Path, doc: Path, work: Path,
) -> None:  # fmt: skip
    """Run the overload benchmark and write the results, the report section and the plot."""
    names = [n for n in server_names.split(",") if n]
    if smoke:
        seconds, recovery, capacity_seconds, warmup, timeout, rounds = 2.0, 2.0, 2.0, 0.5, 5.0, 1
        names = [n for n in names if n != "mlserver"]
    unknown = set(names) - set(ALL_SERVERS)
    if unknown:
        raise click.BadParameter(f"unknown servers {sorted(unknown)}; known: {', '.join(ALL_SERVERS)}")
    pinned, generator_cpus = split_cpus(server_cpus, os.sched_getaffinity(0))
    if pinned is not None:
        os.sched_setaffinity(0, generator_cpus)  # inherited by wrk and the generator; each server gets ``pinned``
    opts = {
        "server_cpus": sorted(pinned) if pinned is not None else None, "generator_cpus": sorted(generator_cpus),
        "seconds": seconds, "recovery": recovery, "multipliers": [float(m) for m in multipliers.split(",")],
        "capacity_seconds": capacity_seconds, "capacity_connections": capacity_connections, "warmup": warmup,
        "timeout": timeout, "max_connections": max_connections, "ready_period": ready_period,
        "ready_timeout": ready_timeout, "rounds": rounds, "clock": clock,
    }  # fmt: skip
    work = work.resolve()  # the peers run from their own folder
    work.mkdir(parents=True, exist_ok=True)
    log = work / "servers.log"
    started = time.time()
    info = machine.describe()
    corpus, source = texts.reviews()
    sample = "This Chatbot is amazing"
    runs = []
    for round_no in range(1, rounds + 1):
        for name in names if round_no % 2 else list(reversed(names)):
            click.echo(f"round {round_no}: {name}...")
            target = _target(name, smoke, work, log, sample, corpus[:32])
            target.cpus = pinned
            runs.append({"round": round_no, **measure(target, corpus, opts, log, work)})
    info["load_average_end"] = machine.load_average()
    data = {
        "command": "make bench-overload" if not smoke else "python -m benchmarks.overload --smoke",
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "wall_s": round(time.time() - started, 1),
        "settings": {**opts, "texts": source, "smoke": smoke},
        "machine": info,
        "runs": runs,
    }
    data["summary"] = overload_report.summarize(data)
    for server, rows in data["summary"].items():
        for row in rows:
            click.echo(f"  {server:<12} {overload_report.row_text(row)}")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(data) + "\n")
    report.write(doc, overload=data)
    click.echo(f"wrote {results} and {doc} in {data['wall_s']} s")


if __name__ == "__main__":
    main()

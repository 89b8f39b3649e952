"""``make bench-slow``: reviewserve as shipped, with 256 slow connections held open, still serving normal requests?

    .venv/bin/python -m benchmarks.slow_clients [--connections 256] [--seconds 20] [--stall-max 90]

A third of the connections trickle header lines, a third send full headers then trickle the body,
a third go idle after one keep-alive request; one the server closes (e.g. when its worker is recycled)
is opened again at once, so all of them are held for the whole run. Meanwhile a Python client (one keep-alive connection
per thread; every request sent is answered or counted as failed, a wrk run would just not count
requests stuck behind the slow clients) sends normal single-review requests; before that, the same
load without slow clients gives the baseline. Last, one connection that
stalls after a partial request and one that sends nothing are timed until the server closes them.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import click

from benchmarks import machine, report, servers, texts
from benchmarks.pyload import run_load
from benchmarks.slowclients import SlowClients, stall_close_seconds
from benchmarks.workers import memory_kib

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "slow_clients.json"


def _pss_mib(pgid: int) -> float:
    return sum(memory_kib(p)["Pss"] for p in servers.group_pids(pgid)) / 1024


def _fmt_close(seconds: float | None, limit: float) -> str:
    return f"{seconds:.1f} s" if seconds is not None else f"not closed within {limit:g} s"


@click.command(help=__doc__)
@click.option("--connections", type=int, default=256, show_default=True, help="Slow connections (split in thirds).")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds between trickled lines/bytes.")
@click.option("--seconds", type=float, default=20.0, show_default=True, help="Normal-load duration.")
@click.option("--normal-connections", type=int, default=8, show_default=True, help="Normal client connections.")
@click.option("--request-timeout", type=float, default=10.0, show_default=True, help="Normal request timeout, s.")
@click.option("--stall-max", type=float, default=90.0, show_default=True, help="Longest wait for a stall close.")
@click.option("--results", type=click.Path(path_type=Path), default=RESULTS, show_default=True)
@click.option("--doc", type=click.Path(path_type=Path), default=ROOT / "docs" / "benchmarks.md", show_default=True)
@click.option("--work", type=click.Path(path_type=Path), default=ROOT / ".bench" / "slow", show_default=True)
def main(
    connections: int,
    interval: float,
    seconds: float,
    normal_connections: int,
    request_timeout: float,
    stall_max: float,
    results: Path,
    doc: Path,
    work: Path,
) -> None:
    """Run the slow-client scenario and write its results and the report."""
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    load_start = tuple(round(x, 1) for x in machine.load_average())
    third = connections // 3
    kinds = {"headers": third, "body": third, "idle": connections - 2 * third}
    target = servers.reviewserve(texts.BUILT_IN[0], texts.BUILT_IN[:2], work)
    plan = [("single", *target.single, 200, 1)]

    def load() -> dict:
        return run_load("127.0.0.1", target.port, plan, normal_connections, seconds, request_timeout).summary()

    with servers.started(target, work / "server.log") as process:
        run_load("127.0.0.1", target.port, plan, normal_connections, 2)  # warm-up
        baseline = load()
        click.echo(f"baseline: {baseline['rps']:.1f} req/s p99 {baseline['p99_ms']:.1f} ms failed {baseline['failed']}")
        pss_before = _pss_mib(process.pid)
        slow = SlowClients(
            "127.0.0.1", target.port, interval=interval, body_length=100_000, reconnect=True, **kinds
        )
        with slow:
            time.sleep(2 * interval + 1)  # all connected and trickling
            normal = load()
            pss_during = _pss_mib(process.pid)
            open_at_end = slow.open_count()
            closed = slow.closed_by_kind()
            idle_answered = slow.idle_answered()
        click.echo(
            f"with {len(slow.conns)} slow: sent {normal['sent']}, answered {normal['answered']}, failed "
            f"{normal['failed']} {normal['socket_error_kinds']}, "
            f"p50 {normal['p50_ms']:.1f} p99 {normal['p99_ms']:.1f} ms; "
            f"slow still open {open_at_end}, closed {closed}, reopened {slow.reopened}"
        )
        stalls: dict[str, float | None] = {}

        def stall(name: str, partial: bytes) -> None:
            stalls[name] = stall_close_seconds("127.0.0.1", target.port, stall_max, partial)

        threads = [
            threading.Thread(target=stall, args=("partial", b"POST /predict HTTP/1.1\r\nHost: x\r\n")),
            threading.Thread(target=stall, args=("silent", b"")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        click.echo(f"stalled connections closed after: {stalls}")
    data = {
        "command": "make bench-slow",
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "load_average_start": load_start,
        "settings": {
            "connections": connections,
            **kinds,
            "interval_s": interval,
            "normal_connections": normal_connections,
            "normal_seconds": seconds,
            "request_timeout_s": request_timeout,
            "stall_max_s": stall_max,
        },
        "result": {
            "slow_opened": len(slow.conns),
            "slow_connect_failures": slow.connect_failures,
            "slow_reopened": slow.reopened,
            "slow_open_at_end": open_at_end,
            "slow_closed_by_kind": closed,
            "idle_answered": idle_answered,
            "baseline": baseline,
            "normal": normal,
            "pss_before_mib": pss_before,
            "pss_during_mib": pss_during,
            "stall": _fmt_close(stalls.get("partial"), stall_max),
            "stall_silent": _fmt_close(stalls.get("silent"), stall_max),
        },
    }
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(data, indent=1) + "\n")
    report.write(doc, slow=data)
    click.echo(f"wrote {results} and {doc}")


if __name__ == "__main__":
    main()

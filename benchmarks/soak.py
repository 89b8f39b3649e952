"""``make bench-soak``: reviewserve at c=8 for 10 minutes, mixed traffic with 10% bad input, recycling on.

    .venv/bin/python -m benchmarks.soak [--seconds 600] [--connections 32] [--max-requests 2000]
    make bench-soak DURATION=3600     # the hour's soak

Every ``--sample-seconds`` (60) it samples what must stay flat over a long run: the live workers'
RSS, open files of the master and workers, files and bytes of the metrics folder, the time of
``GET /metrics``, p99 latency of that minute's requests, requests answered and workers recycled so
far; the table and a plot (docs/benchmarks/soak.png) go into docs/benchmarks.md. Every scrape is
also checked against the previous one: no counter, histogram or summary sample may go down.

A Python client (one keep-alive connection per thread, like a proxy's upstream pool) so every request
sent is accounted for: each is answered or fails with a socket error, none is left in flight, and
the server's /metrics must count exactly the requests answered. Bad inputs must get their 4xx.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from collections import Counter
from pathlib import Path

import click
from prometheus_client.parser import text_string_to_metric_families

from benchmarks import machine, report, servers, texts
from benchmarks.inprocess import percentile
from benchmarks.pyload import Request, Tally, start_load
from benchmarks.workers import children, counts_from_metrics_dir, log_records, memory_kib
from reviewserve.web.metricsdir import usage

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "soak.json"
RESULTS_NO_RECYCLING = ROOT / "benchmarks" / "results" / "soak-no-recycling.json"  # --max-requests 0
V2 = servers.V2_PATH


def schedule(corpus: list[str], max_reviews: int = 64) -> list[Request]:
    """20 requests repeated: (kind, path, body, expected status, reviews scored if 200); 2 of 20 are bad."""
    corpus = corpus * (160 // len(corpus) + 1)  # the built-in list (no ../shared/data) is shorter than 160
    good = [
        *[("single", "/predict", texts.single_body(corpus[i]), 200, 1) for i in range(9)],
        *[("list", "/predict", texts.list_body(corpus[i : i + 32]), 200, 32) for i in range(0, 5 * 32, 32)],
        *[("v2", V2, texts.v2_body(corpus[i : i + 4]), 200, 4) for i in range(0, 16, 4)],
    ]
    bad = [
        ("bad:invalid_json", "/predict", '{"review": "unterminated', 400, 0),
        ("bad:wrong_type", "/predict", json.dumps({"review": 42}), 422, 0),
        ("bad:empty_review", "/predict", json.dumps({"review": "   "}), 422, 0),
        ("bad:too_many_reviews", "/predict", texts.list_body(["fine"] * (max_reviews + 1)), 422, 0),
        ("bad:deep_json", "/predict", "[" * 1000, 400, 0),
        ("bad:deep_json_v2", V2, '{"inputs": ' + "[" * 1000 + "]" * 1000 + "}", 400, 0),
    ]
    # 18 good + 2 bad per 20; the bad kinds take turns across repeats of the block
    blocks = []
    for b in range(len(bad)):
        blocks += [*good[:9], bad[b], *good[9:], bad[(b + 3) % len(bad)]]
    return blocks


def _metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not (line.startswith(name + "{") or line.startswith(name + " ")):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _workers_rss_mib(master: int) -> float:
    return sum(memory_kib(p)["Rss"] for p in children(master)) / 1024


def _open_files(pids: list[int]) -> int:
    """Open file descriptors of ``pids`` (those still running)."""
    total = 0
    for pid in pids:
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
    return total


class LogFollower:
    """Reads the server log as it grows: worker boots and requests per worker pid (the log gets big in an hour)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.boots = 0
        self.per_worker: Counter[int] = Counter()
        self.pid_missing = False

    def update(self) -> None:
        """Read what was appended since the last call (whole lines only)."""
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        lines = data[:end].decode(errors="replace").splitlines()
        for record in log_records(lines):
            message = record.get("message", "")
            if message == "request":
                pid = record.get("pid", record.get("process"))
                if pid is None:
                    self.pid_missing = True
                else:
                    self.per_worker[int(pid)] += 1
            elif message.startswith("Booting worker with pid"):
                self.boots += 1


class MetricsWatch:
    """Scrapes /metrics, timing it, and counts every counter/histogram/summary sample that went down."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.previous: dict[tuple, float] = {}
        self.decreases: list[str] = []

    def scrape(self, rounds: int = 3) -> float:
        """Median milliseconds of ``rounds`` scrapes; each is checked against the one before."""
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            text = _get(self.url + "/metrics")
            times.append((time.perf_counter() - started) * 1000)
            now = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text)
                if family.type in ("counter", "histogram", "summary")
                for s in family.samples
            }
            self.decreases += [f"{k}: {v} -> {now.get(k)}" for k, v in self.previous.items() if now.get(k, 0.0) < v]
            self.previous = now
        return statistics.median(times)


def _sample(at: float, master: int, metrics_dir: Path, watch: MetricsWatch, tally: Tally, logs: LogFollower) -> dict:
    """One row of the per-minute table."""
    window = tally.take_window()
    logs.update()
    folder = usage(metrics_dir)
    return {
        "t_s": round(at, 1),
        "answered": tally.answered,
        "recycles": max(0, logs.boots - len(children(master))),
        "workers_rss_mib": round(_workers_rss_mib(master), 1),
        "master_rss_mib": round(memory_kib(master)["Rss"] / 1024, 1),
        "open_files": _open_files([master, *children(master)]),
        "metrics_files": folder["files"],
        "metrics_kib": round(folder["bytes"] / 1024, 1),
        "metrics_ms": round(watch.scrape(), 2),
        "p99_ms": round(percentile(window, 99) * 1000, 1) if window else None,
        "window_requests": len(window),
    }


@click.command(help=__doc__)
@click.option("--seconds", type=float, default=600.0, show_default=True, help="Soak duration.")
# c=8: a busy pod within its shedding budget. A closed loop of 32 clients is 16 requests queued per worker, past
# MAX_QUEUE_MS=20 of mixed work: 85% of its answers were sheds (retried at once), not the traffic a soak is for.
@click.option("--connections", type=int, default=8, show_default=True, help="Concurrent keep-alive clients.")
@click.option("--max-requests", type=int, default=2000, show_default=True, help="MAX_REQUESTS (recycling).")
@click.option("--jitter", type=int, default=200, show_default=True, help="MAX_REQUESTS_JITTER.")
@click.option(
    "--max-queue-ms",
    type=float,
    default=None,
    help="MAX_QUEUE_MS (shedding budget); default as shipped. 0 turns shedding off.",
)
@click.option("--sample-seconds", type=float, default=60.0, show_default=True, help="Seconds between samples.")
@click.option(
    "--results",
    type=click.Path(path_type=Path),
    default=None,
    help=f"Results JSON [default: {RESULTS.relative_to(ROOT)}, or {RESULTS_NO_RECYCLING.relative_to(ROOT)} "
    "with --max-requests 0].",
)
@click.option("--doc", type=click.Path(path_type=Path), default=ROOT / "docs" / "benchmarks.md", show_default=True)
@click.option("--work", type=click.Path(path_type=Path), default=ROOT / ".bench" / "soak", show_default=True)
def main(
    seconds: float,
    connections: int,
    max_requests: int,
    jitter: int,
    max_queue_ms: float | None,
    sample_seconds: float,
    results: Path | None,
    doc: Path,
    work: Path,
) -> None:
    """Run the soak and write its results and the report."""
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    load_start = tuple(round(x, 1) for x in machine.load_average())
    corpus, source = texts.reviews()
    plan = schedule(corpus)
    target = servers.reviewserve(corpus[0], corpus[:32], work)
    target.env.update(MAX_REQUESTS=str(max_requests), MAX_REQUESTS_JITTER=str(jitter))
    if max_queue_ms is not None:
        target.env["MAX_QUEUE_MS"] = f"{max_queue_ms:g}"
    metrics_dir = Path(target.env["PROMETHEUS_MULTIPROC_DIR"])
    log = work / f"server-{target.port}.log"
    rss_samples: list[tuple[float, float]] = []
    # per sampling interval: the share of its requests served by the busiest worker (1.0 = one worker did all)
    busiest_shares: list[float] = []
    with servers.started(target, log) as process:
        # the readiness probe's POST is counted by the server too: start from the server's own count
        before = _get(target.url + "/metrics")
        base = _metric_sum(before, "flask_http_request_total", method="POST")
        base_predictions = _metric_sum(before, "reviewserve_predictions_total")
        base_req_reviews = _metric_sum(before, "reviewserve_request_reviews_count")
        base_shed = _metric_sum(before, "reviewserve_requests_shed_total")
        workers = int(target.env.get("WORKERS") or len(os.sched_getaffinity(0)))  # the server's default
        logs = LogFollower(log)
        watch = MetricsWatch(target.url)
        samples: list[dict] = []
        t0 = time.monotonic()
        tally, threads = start_load("127.0.0.1", target.port, plan, connections, seconds)
        deadline = t0 + seconds
        next_sample = t0 + min(10.0, sample_seconds)  # the first row 10 s in, then every sample_seconds
        previous = counts_from_metrics_dir(metrics_dir)
        while any(t.is_alive() for t in threads):
            time.sleep(min(10.0, max(0.5, deadline - time.monotonic()), max(0.5, next_sample - time.monotonic())))
            if time.monotonic() >= next_sample and any(t.is_alive() for t in threads):
                samples.append(_sample(time.monotonic() - t0, process.pid, metrics_dir, watch, tally, logs))
                row = samples[-1]
                click.echo(
                    f"  {row['t_s']:6.0f} s: {row['recycles']} recycles, folder {row['metrics_files']} files "
                    f"{row['metrics_kib']} KiB, /metrics {row['metrics_ms']} ms, p99 {row['p99_ms']} ms, "
                    f"open files {row['open_files']}"
                )
                next_sample += sample_seconds
            now = counts_from_metrics_dir(metrics_dir)
            served = [now[pid] - previous[pid] for pid in now if now[pid] > previous[pid]]
            if sum(served) >= 100:
                busiest_shares.append(round(max(served) / sum(served), 3))
            previous = now
            rss_samples.append((round(time.monotonic() - t0, 1), round(_workers_rss_mib(process.pid), 1)))
            at, rss = rss_samples[-1]
            click.echo(f"  {at:6.0f} s: {tally.answered} answered, workers RSS {rss} MiB")
        for thread in threads:
            thread.join()
        tally.elapsed = time.monotonic() - t0
        time.sleep(1)
        samples.append(_sample(time.monotonic() - t0, process.pid, metrics_dir, watch, tally, logs))
        rss_end = _workers_rss_mib(process.pid)
        metrics = _get(target.url + "/metrics")
        logs.update()
    # RSS "at start" is the first sample, 10 s into the load: right after readiness not every worker
    # has necessarily been forked yet (seen: 1 of 2), and a just-forked worker has touched little.
    rss_start = rss_samples[0][1] if rss_samples else rss_end
    per_worker_log = None if logs.pid_missing else logs.per_worker
    per_worker = per_worker_log if per_worker_log is not None else counts_from_metrics_dir(metrics_dir)
    result = {
        **tally.summary(),
        "workers": workers,
        "workers_seen": len(per_worker),
        "per_worker_source": "request log pid" if per_worker_log is not None else "metrics files per pid",
        "per_worker": {str(pid): n for pid, n in sorted(per_worker.items())},
        "busiest_worker_share": busiest_shares,
        "rss_start_mib": rss_start,
        "rss_end_mib": rss_end,
        "rss_growth_pct": (rss_end / rss_start - 1) * 100 if rss_start else 0.0,
        "rss_samples": rss_samples,
        "rss_max_mib": max((x[1] for x in rss_samples), default=rss_end),
        # the probe's requests before the soak are subtracted; the soak's own are all POSTs
        "metrics_requests": _metric_sum(metrics, "flask_http_request_total", method="POST") - base,
        "metrics_predictions": _metric_sum(metrics, "reviewserve_predictions_total") - base_predictions,
        "metrics_request_reviews_count": _metric_sum(metrics, "reviewserve_request_reviews_count") - base_req_reviews,
        "metrics_shed": _metric_sum(metrics, "reviewserve_requests_shed_total") - base_shed,
        "recycles": max(0, logs.boots - workers),
        "samples": samples,
        "metrics_scrapes_checked": len(samples) * 3,
        "counter_decreases": watch.decreases[:20],
        "counter_decrease_count": len(watch.decreases),
    }
    data = {
        "command": "make bench-soak"
        + (f" DURATION={seconds:g}" if seconds != 600 else "")
        + (' BENCH_ARGS="--max-requests 0"' if max_requests == 0 else ""),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "load_average_start": load_start,
        "settings": {
            "seconds": seconds,
            "connections": connections,
            "max_requests": max_requests,
            "jitter": jitter,
            "max_queue_ms": max_queue_ms,
            "sample_seconds": sample_seconds,
            "texts": source,
            "mix": "per 20 requests: 9 single, 5 lists of 32, 4 V2 infer of 4, 2 bad (invalid JSON, wrong type, "
            "empty review, 65 reviews, 1000 nested [, deep V2 inputs, in turn)",
        },
        "result": result,
    }
    if results is None:
        results = RESULTS_NO_RECYCLING if max_requests == 0 else RESULTS
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(data, indent=1) + "\n")
    if max_requests == 0:
        report.write(doc, soak_no_recycling=data)
    else:
        report.write(doc, soak=data)
    brief = {k: v for k, v in result.items() if k not in ("rss_samples", "per_worker", "samples")}
    click.echo(json.dumps(brief, indent=1))
    click.echo(f"wrote {results} and {doc}")


def _get(url: str) -> str:
    import requests

    return requests.get(url, timeout=30).text


if __name__ == "__main__":
    main()

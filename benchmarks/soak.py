"""``make bench-soak``: reviewserve at c=32 for 10 minutes, mixed traffic with 10% bad input, recycling on.

    .venv/bin/python -m benchmarks.soak [--seconds 600] [--connections 32] [--max-requests 2000]

A Python client (one keep-alive connection per thread, like a proxy's upstream pool) so every request
sent is accounted for: each is answered or fails with a socket error, none is left in flight, and
the server's /metrics must count exactly the requests answered. Bad inputs must get their 4xx.
"""

from __future__ import annotations

import http.client
import json
import re
import statistics
import threading
import time
from collections import Counter
from pathlib import Path

import click

from benchmarks import machine, report, servers, texts
from benchmarks.inprocess import percentile
from benchmarks.workers import children, counts_from_metrics_dir, memory_kib, pids_from_log

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "soak.json"
V2 = servers.V2_PATH


def schedule(corpus: list[str], max_reviews: int = 64) -> list[tuple[str, str, str, int, int]]:
    """20 requests repeated: (kind, path, body, expected status, reviews scored if 200); 2 of 20 are bad."""
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


class Tally:
    """Thread-safe counts of what the client saw."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent = 0
        self.answered = 0
        self.by_status: Counter[int] = Counter()
        self.by_kind_status: Counter[str] = Counter()
        self.unexpected: Counter[str] = Counter()
        self.socket_errors: Counter[str] = Counter()
        self.reviews_scored = 0
        self.ok_prediction_requests = 0
        self.latencies: list[float] = []


def _client(host: str, port: int, plan, offset: int, deadline: float, tally: Tally) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    i = offset
    local_lat: list[float] = []
    while time.monotonic() < deadline:
        kind, path, body, expected, reviews = plan[i % len(plan)]
        i += 1
        with tally.lock:
            tally.sent += 1
        started = time.perf_counter()
        try:
            conn.request("POST", path, body=body.encode(), headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            with tally.lock:
                tally.socket_errors[type(exc).__name__] += 1
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=30)
            continue
        local_lat.append(time.perf_counter() - started)
        with tally.lock:
            tally.answered += 1
            tally.by_status[response.status] += 1
            tally.by_kind_status[f"{kind} {response.status}"] += 1
            if response.status != expected:
                tally.unexpected[f"{kind}: {response.status} (expected {expected})"] += 1
            if response.status == 200:
                tally.reviews_scored += reviews
                tally.ok_prediction_requests += 1
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.close()
    with tally.lock:
        tally.latencies.extend(local_lat)


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


@click.command(help=__doc__)
@click.option("--seconds", type=float, default=600.0, show_default=True, help="Soak duration.")
@click.option("--connections", type=int, default=32, show_default=True, help="Concurrent keep-alive clients.")
@click.option("--max-requests", type=int, default=2000, show_default=True, help="MAX_REQUESTS (recycling).")
@click.option("--jitter", type=int, default=200, show_default=True, help="MAX_REQUESTS_JITTER.")
@click.option("--results", type=click.Path(path_type=Path), default=RESULTS, show_default=True)
@click.option("--doc", type=click.Path(path_type=Path), default=ROOT / "docs" / "benchmarks.md", show_default=True)
@click.option("--work", type=click.Path(path_type=Path), default=ROOT / ".bench" / "soak", show_default=True)
def main(
    seconds: float, connections: int, max_requests: int, jitter: int, results: Path, doc: Path, work: Path
) -> None:
    """Run the soak and write its results and the report."""
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    load_start = tuple(round(x, 1) for x in machine.load_average())
    corpus, source = texts.reviews()
    plan = schedule(corpus)
    target = servers.reviewserve(corpus[0], corpus[:32], work)
    target.env.update(MAX_REQUESTS=str(max_requests), MAX_REQUESTS_JITTER=str(jitter))
    metrics_dir = Path(target.env["PROMETHEUS_MULTIPROC_DIR"])
    log = work / f"server-{target.port}.log"
    tally = Tally()
    rss_samples: list[tuple[float, float]] = []
    with servers.started(target, log) as process:
        # the readiness probe's POST is counted by the server too: start from the server's own count
        base = _metric_sum(_get(target.url + "/metrics"), "flask_http_request_total", method="POST")
        base_predictions = _metric_sum(_get(target.url + "/metrics"), "reviewserve_predictions_total")
        base_req_reviews = _metric_sum(_get(target.url + "/metrics"), "reviewserve_request_reviews_count")
        rss_start = _workers_rss_mib(process.pid)
        deadline = time.monotonic() + seconds
        threads = [
            threading.Thread(
                target=_client, args=("127.0.0.1", target.port, plan, k * 7, deadline, tally), daemon=True
            )
            for k in range(connections)
        ]
        t0 = time.monotonic()
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            time.sleep(min(10.0, max(0.5, deadline - time.monotonic())))
            rss_samples.append((round(time.monotonic() - t0, 1), round(_workers_rss_mib(process.pid), 1)))
            at, rss = rss_samples[-1]
            click.echo(f"  {at:6.0f} s: {tally.answered} answered, workers RSS {rss} MiB")
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - t0
        time.sleep(1)
        rss_end = _workers_rss_mib(process.pid)
        metrics = _get(target.url + "/metrics")
    per_worker_log = pids_from_log(log.read_text(errors="replace").splitlines())
    per_worker = Counter(per_worker_log) if per_worker_log is not None else counts_from_metrics_dir(metrics_dir)
    lat = sorted(tally.latencies)
    result = {
        "sent": tally.sent,
        "answered": tally.answered,
        "rps": tally.answered / elapsed,
        "by_status": dict(sorted(tally.by_status.items())),
        "by_kind_status": dict(sorted(tally.by_kind_status.items())),
        "5xx": sum(n for s, n in tally.by_status.items() if s >= 500),
        "socket_errors": sum(tally.socket_errors.values()),
        "socket_error_kinds": dict(tally.socket_errors),
        "unexpected": dict(tally.unexpected),
        "p50_ms": statistics.median(lat) * 1000 if lat else 0.0,
        "p99_ms": percentile(lat, 99) * 1000 if lat else 0.0,
        "workers_seen": len(per_worker),
        "per_worker_source": "request log pid" if per_worker_log is not None else "metrics files per pid",
        "per_worker": {str(pid): n for pid, n in sorted(per_worker.items())},
        "rss_start_mib": rss_start,
        "rss_end_mib": rss_end,
        "rss_growth_pct": (rss_end / rss_start - 1) * 100 if rss_start else 0.0,
        "rss_samples": rss_samples,
        # the probe's requests before the soak are subtracted; the soak's own are all POSTs
        "metrics_requests": _metric_sum(metrics, "flask_http_request_total", method="POST") - base,
        "metrics_predictions": _metric_sum(metrics, "reviewserve_predictions_total") - base_predictions,
        "metrics_request_reviews_count": _metric_sum(metrics, "reviewserve_request_reviews_count") - base_req_reviews,
        "reviews_scored": tally.reviews_scored,
        "ok_prediction_requests": tally.ok_prediction_requests,
    }
    data = {
        "command": "make bench-soak",
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "load_average_start": load_start,
        "settings": {
            "seconds": seconds,
            "connections": connections,
            "max_requests": max_requests,
            "jitter": jitter,
            "texts": source,
            "mix": "per 20 requests: 9 single, 5 lists of 32, 4 V2 infer of 4, 2 bad (invalid JSON, wrong type, "
            "empty review, 65 reviews, 1000 nested [, deep V2 inputs, in turn)",
        },
        "result": result,
    }
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(data, indent=1) + "\n")
    report.write(doc, soak=data)
    click.echo(json.dumps({k: v for k, v in result.items() if k not in ("rss_samples", "per_worker")}, indent=1))
    click.echo(f"wrote {results} and {doc}")


def _get(url: str) -> str:
    import requests

    return requests.get(url, timeout=30).text


if __name__ == "__main__":
    main()

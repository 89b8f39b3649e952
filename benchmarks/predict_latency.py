"""Benchmark: in-process predict latency, batching gain, HTTP overhead and shared memory under gunicorn.

Every figure is measured in one run on this machine and reported with its ratio to a baseline
measured in the same run (absolute numbers move between machines; ratios move less).

    .venv/bin/python benchmarks/predict_latency.py [--seconds 10] [--workers 2] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "service"))

from reviewserve.model import Predictor  # noqa: E402

REVIEWS = [
    "This Chatbot is amazing",
    "The battery died after two days and support never answered.",
    "Food was fine, service was slow, but the dessert made up for it.",
    "I would not recommend this phone to anyone.",
    "Great value for the price, works exactly as described!",
    "Worst purchase I have made this year.",
    "The staff were friendly and the place was spotless.",
    "It's okay, nothing special.",
]


def percentile(values: list[float], q: float) -> float:
    """q-th percentile (0-100) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def in_process(predictor: Predictor, n: int) -> dict[str, float]:
    """Single-review latency and the per-review cost of a 64-review batch."""
    for text in REVIEWS * 10:
        predictor.predict([text])
    single = []
    for i in range(n):
        started = time.perf_counter()
        predictor.predict([REVIEWS[i % len(REVIEWS)]])
        single.append(time.perf_counter() - started)
    batch = [REVIEWS[i % len(REVIEWS)] for i in range(64)]
    batch_times = []
    for _ in range(max(20, n // 50)):
        started = time.perf_counter()
        predictor.predict(batch)
        batch_times.append(time.perf_counter() - started)
    per_review_batched = statistics.median(batch_times) / 64
    return {
        "single_p50_ms": statistics.median(single) * 1000,
        "single_p99_ms": percentile(single, 99) * 1000,
        "single_mean_ms": statistics.fmean(single) * 1000,
        "batch64_per_review_ms": per_review_batched * 1000,
        "batching_speedup": statistics.median(single) / per_review_batched,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pss_kib(pid: int) -> tuple[int, int]:
    """(Pss, Rss) of a process in KiB from /proc/<pid>/smaps_rollup."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0])
    return fields["Pss"], fields["Rss"]


def over_http(seconds: float, workers: int, clients: int, tmp: Path) -> dict[str, float]:
    """Closed-loop load on a real gunicorn: throughput, latency, and memory sharing across workers."""
    port = _free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "WORKERS": str(workers),
        "LOG_LEVEL": "WARNING",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "reviewserve.cli", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        latencies: list[float] = []
        errors = 0
        stop_at = time.monotonic() + seconds
        lock = threading.Lock()

        def loop(index: int) -> None:
            nonlocal errors
            session = requests.Session()
            i = index
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                response = session.post(url + "/predict", json={"review": REVIEWS[i % len(REVIEWS)]}, timeout=10)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    errors += response.status_code != 200
                i += 1

        threads = [threading.Thread(target=loop, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        pids = [server.pid] + [
            int(p)
            for p in subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout.split()
        ]
        pss, rss = zip(*(_pss_kib(p) for p in pids), strict=True)
        return {
            "http_requests": len(latencies),
            "http_errors": errors,
            "http_rps": len(latencies) / seconds,
            "http_p50_ms": statistics.median(latencies) * 1000,
            "http_p99_ms": percentile(latencies, 99) * 1000,
            "processes": len(pids),
            "memory_pss_mib": sum(pss) / 1024,
            "memory_rss_sum_mib": sum(rss) / 1024,
            "memory_shared_ratio": sum(rss) / sum(pss),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--single", type=int, default=2000, help="single-review predictions to time")
    parser.add_argument("--seconds", type=float, default=10.0, help="HTTP load duration")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    import tempfile

    predictor = Predictor.load(ROOT / "models" / "review-sentiment" / "1")
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "model_load_s": predictor.load_seconds,
        **in_process(predictor, args.single),
    }
    with tempfile.TemporaryDirectory() as tmp:
        results.update(over_http(args.seconds, args.workers, args.clients, Path(tmp)))
    results["http_over_inprocess_p50"] = results["http_p50_ms"] / results["single_p50_ms"]
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("| metric | value |\n|---|---|")
    for key, value in results.items():
        print(f"| {key} | {value:.3f} |" if isinstance(value, float) else f"| {key} | {value} |")


if __name__ == "__main__":
    main()

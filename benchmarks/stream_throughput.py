"""Streaming benchmark: end-to-end messages/s and produce-to-result latency over a real Redis.

All in one run, on this machine:

1. in-process: ``Predictor.predict`` over batches of ``--batch-size`` reviews (the ceiling), wall
   clock and per CPU second;
2. end-to-end with 1 and 2 ``reviewserve stream consume`` processes: ``--messages`` reviews pushed
   as fast as the producer can (pipelined XADD), timed from the first message's stream id to the
   last result's stream id (both Redis server clock, ms); the ratio to (1) is the figure of merit;
   (1) and (2) run in ``--rounds`` interleaved rounds and the medians are reported;
3. latency: a steady rate of half the 2-consumer throughput for ``--seconds``; per message, the
   result's stream id time minus the source message's id time (ms resolution), p50/p99.

Reviews are the UCI sentences from ../shared/data when present, else synthetic ones. The load
average before and after is recorded: the machine may be shared.

    .venv/bin/python -m benchmarks.stream_throughput --out benchmarks/results/stream.json   (make bench-stream)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis
import requests

from benchmarks.machine import cpu_model
from benchmarks.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "models" / "review-sentiment" / "1"
SHARED = ROOT.parent / "shared" / "data" / "uci-sentiment"


def load_reviews(count: int) -> list[str]:
    """``count`` review texts: the UCI sentences cycled, or synthetic ones."""
    texts: list[str] = []
    for name in ("amazon_cells_labelled.txt", "yelp_labelled.txt"):
        path = SHARED / name
        if path.is_file():
            texts += [line.rsplit("\t", 1)[0] for line in path.read_text(encoding="utf-8").splitlines() if "\t" in line]
    if not texts:
        texts = [f"the battery is {'great' if i % 2 else 'awful'} and the screen is fine {i}" for i in range(1000)]
    return [texts[i % len(texts)] for i in range(count)]


def id_ms(stream_id: str) -> int:
    """Milliseconds part of a stream id."""
    return int(stream_id.split("-", 1)[0])


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class RedisServer:
    """A private redis-server without persistence."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen([*cmd, "--dir", str(workdir)], stdout=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis.from_url(self.url, decode_responses=True)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM and wait."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=20)


def start_consumers(url: str, keys: dict[str, str], count: int, batch: int, logdir: Path) -> list[Any]:
    """Start ``count`` consumer processes and wait until each answers /readyz."""
    procs = []
    for i in range(count):
        port = free_port()
        args = [sys.executable, "-m", "reviewserve.cli", "stream", "consume", "--group", "bench", "--consumer", f"c{i}"]
        args += ["--stream", keys["stream"], "--results", keys["results"], "--dead-letter", keys["dead"]]
        args += ["--batch-size", str(batch), "--health-port", str(port), "--redis-url", url]
        env = {**os.environ, "MODEL_PATH": str(MODEL_DIR), "LOG_LEVEL": "WARNING"}
        log = (logdir / f"consumer-{keys['stream']}-{i}.log").open("wb")
        procs.append((subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=log), port))
    for process, port in procs:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"consumer exited with {process.returncode}; logs in {logdir}")
            try:
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("consumer not ready in 120 s")
            time.sleep(0.1)
    return [p for p, _ in procs]


def stop_consumers(procs: list[Any]) -> None:
    """SIGTERM every consumer and check it exits 0."""
    for process in procs:
        process.send_signal(signal.SIGTERM)
    for process in procs:
        if process.wait(timeout=60) != 0:
            raise RuntimeError(f"consumer exited with {process.returncode}")


def new_keys() -> dict[str, str]:
    """Fresh stream names for one measurement."""
    tag = uuid.uuid4().hex[:8]
    return {"stream": f"bench:{tag}", "results": f"bench:{tag}:out", "dead": f"bench:{tag}:dead"}


def in_process(texts: list[str], batch: int) -> dict[str, float]:
    """Predictor batch throughput in this process (best of 3 passes)."""
    from reviewserve.model import Predictor

    predictor = Predictor.load(MODEL_DIR)
    predictor.predict(texts[:batch])  # warm-up
    best = cpu_best = float("inf")
    for _ in range(3):
        started, cpu_started = time.perf_counter(), time.process_time()
        for i in range(0, len(texts), batch):
            predictor.predict(texts[i : i + batch])
        best = min(best, time.perf_counter() - started)
        cpu_best = min(cpu_best, time.process_time() - cpu_started)
    # Wall clock is what this run got from a possibly busy machine; CPU time is the one-core ceiling.
    return {
        "messages": len(texts),
        "seconds": best,
        "messages_per_s": len(texts) / best,
        "cpu_seconds": cpu_best,
        "messages_per_cpu_s": len(texts) / cpu_best,
    }


def end_to_end(server: RedisServer, texts: list[str], consumers: int, batch: int, logdir: Path) -> dict[str, float]:
    """Messages/s from the first produced message to the last result, with ``consumers`` processes."""
    keys = new_keys()
    r = server.client
    r.xgroup_create(keys["stream"], "bench", id="0", mkstream=True)
    procs = start_consumers(server.url, keys, consumers, batch, logdir)
    try:
        first_id = None
        for i in range(0, len(texts), 500):
            pipe = r.pipeline(transaction=False)
            for text in texts[i : i + 500]:
                pipe.xadd(keys["stream"], {"review": text})
            ids = pipe.execute()
            first_id = first_id or ids[0]
        deadline = time.monotonic() + 600
        while r.xlen(keys["results"]) < len(texts):
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {r.xlen(keys['results'])} of {len(texts)} results")
            time.sleep(0.02)
        [(last_id, _)] = r.xrevrange(keys["results"], count=1)
        seconds = (id_ms(last_id) - id_ms(first_id)) / 1000
    finally:
        stop_consumers(procs)
    results = r.xrange(keys["results"])
    assert len({f["source_id"] for _, f in results}) == len(texts) == len(results), "one result per message"
    return {"consumers": consumers, "messages": len(texts), "seconds": seconds, "messages_per_s": len(texts) / seconds}


def latency(server: RedisServer, texts: list[str], rate: float, seconds: float, batch: int, logdir: Path) -> dict:
    """Produce-to-result latency at a steady ``rate`` (messages/s) with 2 consumers."""
    keys = new_keys()
    r = server.client
    r.xgroup_create(keys["stream"], "bench", id="0", mkstream=True)
    procs = start_consumers(server.url, keys, 2, batch, logdir)
    tick = 0.005
    sent = 0
    try:
        started = time.perf_counter()
        while (now := time.perf_counter() - started) < seconds:
            due = int(now * rate) + 1
            if due > sent:
                pipe = r.pipeline(transaction=False)
                for i in range(sent, due):
                    pipe.xadd(keys["stream"], {"review": texts[i % len(texts)]})
                pipe.execute()
                sent = due
            time.sleep(max(0.0, started + (int(now / tick) + 1) * tick - time.perf_counter()))
        deadline = time.monotonic() + 120
        while r.xlen(keys["results"]) < sent and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop_consumers(procs)
    source_ms = {i: id_ms(i) for i, _ in r.xrange(keys["stream"])}
    lat = [id_ms(rid) - source_ms[f["source_id"]] for rid, f in r.xrange(keys["results"])]
    assert len(lat) == sent, f"{len(lat)} results for {sent} messages"
    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "messages": sent,
        "achieved_per_s": sent / seconds,
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "max_ms": max(lat),
    }


def main() -> None:
    """Run the three measurements and print / write them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000, help="messages per throughput run")
    parser.add_argument("--batch-size", type=int, default=64, help="consumer --batch-size and in-process batch")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of the steady-rate latency run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the throughput runs (medians)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()

    texts = load_reviews(args.messages)
    load_before = os.getloadavg()
    report: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "load_before": load_before,
        "batch_size": args.batch_size,
        "messages": args.messages,
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server = RedisServer(workdir)
        try:
            # Interleaved rounds, medians reported: a busy machine's load changes during a run.
            rounds = []
            for _ in range(args.rounds):
                rounds.append(
                    {
                        "in_process": in_process(texts, args.batch_size),
                        "end_to_end": [end_to_end(server, texts, n, args.batch_size, workdir) for n in (1, 2)],
                    }
                )
            report["rounds"] = rounds
            ceiling = statistics.median(r["in_process"]["messages_per_s"] for r in rounds)
            cpu_ceiling = statistics.median(r["in_process"]["messages_per_cpu_s"] for r in rounds)
            e2e = {n: statistics.median(r["end_to_end"][n - 1]["messages_per_s"] for r in rounds) for n in (1, 2)}
            report["median"] = {
                "in_process_per_s": ceiling,
                "in_process_per_cpu_s": cpu_ceiling,
                **{f"consumers_{n}_per_s": v for n, v in e2e.items()},
                **{f"consumers_{n}_ratio_to_in_process": v / ceiling for n, v in e2e.items()},
                **{f"consumers_{n}_ratio_to_one_core": v / cpu_ceiling for n, v in e2e.items()},
            }
            report["latency"] = latency(server, texts, e2e[2] / 2, args.seconds, args.batch_size, workdir)
        finally:
            server.stop()
    report["load_after"] = os.getloadavg()
    print(
        f"in-process Predictor, batches of {args.batch_size}: {ceiling:,.0f} messages/s wall clock, "
        f"{cpu_ceiling:,.0f} per CPU second (one core, uncontended); median of {args.rounds} rounds"
    )
    for n, value in e2e.items():
        print(
            f"end to end, {n} consumer(s): {value:,.0f} messages/s ({value / ceiling:.0%} of in-process wall clock, "
            f"{value / cpu_ceiling:.0%} of one core); rounds: "
            + ", ".join(f"{r['end_to_end'][n - 1]['messages_per_s']:,.0f}" for r in rounds)
        )
    lat = report["latency"]
    print(
        f"latency at {lat['rate_per_s']:,.0f}/s for {lat['seconds']:.0f} s ({lat['messages']} messages): "
        f"p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms"
    )
    print(f"load average before {load_before[0]:.2f}, after {report['load_after'][0]:.2f} ({os.cpu_count()} CPUs)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Benchmark: `reviewserve score` throughput and memory against the in-process Predictor, on SQLite and PostgreSQL.

In one run, for each size (default 100k rows; ``--sizes 100000,1000000`` for the full run):

1. the in-process Predictor's own batch throughput (``predict`` on chunks of ``--chunk-size`` texts, in
   this process, on the same texts);
2. per backend (a temporary SQLite file; a temporary PostgreSQL 15 cluster started here), a fresh table
   of N reviews, then one ``reviewserve score`` job (a real subprocess) between two in-process
   baselines (the machine is shared: the job is compared with the mean of the baselines around it),
   then two shards at once (``--shard 0/2`` and ``--shard 1/2``) on a fresh predictions table;
3. rows/s (the job's own steady-state figure from its summary, and wall clock including start-up),
   the ratios job / in-process and two shards / one job (wall clock), and each job's peak RSS: the
   kernel's high-water mark of that process's own memory (``VmHWM``), read every 0.2 s until it exits.
   Not ``os.wait4``'s ``ru_maxrss``: Linux carries the RSS of the forked copy of this (large)
   benchmark process into the child's ``ru_maxrss`` at exec, so that figure grows with the texts this
   process holds, not with the job (it is kept in the JSON as ``ru_maxrss_mib``, for comparison).

    .venv/bin/python benchmarks/batch_throughput.py [--sizes 100000] [--backends sqlite,postgresql] \
        [--chunk-size 1000] [--out benchmarks/batch_results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "service"), str(ROOT)]

from reviewserve.model import Predictor  # noqa: E402
from reviewserve.model.data import read_file  # noqa: E402

MODEL = ROOT / "models" / "review-sentiment" / "1"
SHARED = ROOT.parent / "shared" / "data"
FALLBACK = [
    "This Chatbot is amazing",
    "The battery died after two days and support never answered.",
    "Food was fine, service was slow, but the dessert made up for it.",
    "I would not recommend this phone to anyone.",
]


def corpus() -> list[str]:
    """Real review sentences (UCI Amazon/Yelp + SST-2) when ../shared/data is there, else a fallback."""
    texts: list[str] = []
    for parts in (("uci-sentiment", "amazon_cells_labelled.txt"), ("uci-sentiment", "yelp_labelled.txt"),
                  ("sst2", "train.tsv")):  # fmt: skip
        path = SHARED.joinpath(*parts)
        if path.is_file():
            texts.extend(read_file(path)[0])
    return texts or FALLBACK


def texts_for(n: int, pool: list[str]) -> list[str]:
    return [pool[i % len(pool)] for i in range(n)]


def in_process_rate(predictor: Predictor, texts: list[str], chunk: int, rows: int) -> float:
    """Rows/s of Predictor.predict over ``rows`` texts in chunks (after a warm-up chunk)."""
    predictor.predict(texts[:chunk])
    started = time.perf_counter()
    for start in range(0, rows, chunk):
        predictor.predict(texts[start : start + chunk])
    return rows / (time.perf_counter() - started)


def load_sqlite(url: str, texts: list[str]) -> None:
    import sqlite3

    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE reviews (id INTEGER PRIMARY KEY, text TEXT)")
        conn.executemany("INSERT INTO reviews VALUES (?, ?)", ((i + 1, t) for i, t in enumerate(texts)))


def load_postgres(url: str, texts: list[str]) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE reviews (id bigint PRIMARY KEY, text text)")
        with conn.cursor().copy("COPY reviews (id, text) FROM STDIN") as copy:
            for i, t in enumerate(texts):
                copy.write_row((i + 1, t))
        conn.execute("ANALYZE reviews")


def drop_predictions(url: str) -> None:
    from sqlalchemy import create_engine, text

    from reviewserve.batch.sql import database_url

    engine = create_engine(database_url(url))
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS predictions"))
    engine.dispose()


class PeakRss:
    """Polls ``VmHWM`` (peak resident memory of the process's own address space) until the process exits."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval, self.kib = pid, interval, 0
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while True:
            try:
                lines = status.read_text().splitlines()
            except (FileNotFoundError, ProcessLookupError):
                return
            hwm = [int(line.split()[1]) for line in lines if line.startswith("VmHWM:")]
            if not hwm:  # a zombie (exited, not yet reaped) has no memory left
                return
            self.kib = max(self.kib, hwm[0])
            time.sleep(self.interval)

    def mib(self) -> float:
        self._thread.join(timeout=5)
        return round(self.kib / 1024, 1)


def run_jobs(url: str, shards: int, chunk: int) -> dict[str, Any]:
    """Start ``shards`` scoring jobs at once; wall time, their summaries and peak RSS (MiB) each."""
    env = {**os.environ, "MODEL_PATH": str(MODEL), "LOG_LEVEL": "WARNING"}
    started = time.perf_counter()
    processes = []
    for k in range(shards):
        cmd = [sys.executable, "-m", "reviewserve.cli", "score", "--source", url, "--no-progress",
               "--chunk-size", str(chunk), "--shard", f"{k}/{shards}"]  # fmt: skip
        processes.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    peaks = [PeakRss(process.pid) for process in processes]
    jobs = []
    for process, peak in zip(processes, peaks, strict=True):
        assert process.stdout is not None and process.stderr is not None
        out, err = process.stdout.read(), process.stderr.read()  # small: WARNING logs + summary
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise RuntimeError(f"job failed ({process.returncode}): {err.decode()[-2000:]}")
        summary = json.loads(out.decode().strip().splitlines()[-1])
        jobs.append({"summary": summary, "peak_rss_mib": peak.mib(), "ru_maxrss_mib": round(usage.ru_maxrss / 1024, 1)})
    wall = time.perf_counter() - started
    rows = sum(j["summary"]["read"] for j in jobs)
    return {"shards": shards, "rows": rows, "wall_seconds": round(wall, 2), "wall_rows_per_s": round(rows / wall, 1),
            "jobs": jobs}  # fmt: skip


def bench_backend(backend: str, url: str, texts: list[str], chunk: int, baseline: Any) -> dict[str, Any]:
    """Load the table, then: in-process baseline, one job, baseline again, two shards (one run, adjacent)."""
    started = time.perf_counter()
    (load_sqlite if backend == "sqlite" else load_postgres)(url, texts)
    load_seconds = time.perf_counter() - started
    before = baseline()
    one = run_jobs(url, 1, chunk)
    after = baseline()
    assert one["rows"] == len(texts), one
    drop_predictions(url)
    two = run_jobs(url, 2, chunk)
    assert two["rows"] == len(texts), two
    return {
        "load_seconds": round(load_seconds, 1),
        # the machine is shared: the baseline is measured right before and after the job it is compared with
        "in_process_rows_per_s": {"before": round(before, 1), "after": round(after, 1)},
        "load_avg_1m_end": os.getloadavg()[0],
        "one_job": one,
        "two_shards": two,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000", help="comma-separated row counts")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--in-process-rows", type=int, default=20_000, help="rows for each in-process baseline")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "batch_results.json")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    pool = corpus()
    predictor = Predictor.load(MODEL)
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_start": os.getloadavg()},
        "chunk_size": args.chunk_size,
        "sizes": {},
    }
    load_samples = results["machine"]["load_avg_1m_every_30s"] = []  # the machine is shared: how busy it was

    def sample_load() -> None:
        while True:
            load_samples.append(round(os.getloadavg()[0], 2))
            time.sleep(30)

    threading.Thread(target=sample_load, daemon=True).start()
    with ExitStack() as stack:
        pg = None
        if "postgresql" in backends:
            from tests.batch import servers

            pg = stack.enter_context(servers.postgres())
        for size in sizes:
            texts = texts_for(size, pool)
            baseline_rows = min(size, args.in_process_rows)

            def baseline(texts: list[str] = texts, rows: int = baseline_rows) -> float:
                return in_process_rate(predictor, texts, args.chunk_size, rows)

            entry: dict[str, Any] = {"in_process_rows": baseline_rows}
            for backend in backends:
                if backend == "sqlite":
                    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-sqlite-"))
                    url = f"sqlite:///{folder}/reviews.db"
                else:
                    assert pg is not None
                    url = pg.create_database(f"bench_{size}")
                result = bench_backend(backend, url, texts, args.chunk_size, baseline)
                rate = sum(result["in_process_rows_per_s"].values()) / 2
                one, two = result["one_job"], result["two_shards"]
                job_rate = one["jobs"][0]["summary"]["rows_per_s"]
                ratios = result["ratios"] = {
                    "job_vs_in_process": round(job_rate / rate, 3),
                    "job_wall_vs_in_process": round(one["wall_rows_per_s"] / rate, 3),
                    "two_shards_vs_one_job_wall": round(two["wall_rows_per_s"] / one["wall_rows_per_s"], 3),
                }
                entry[backend] = result
                results["sizes"][str(size)] = entry
                args.out.write_text(json.dumps(results, indent=2) + "\n")  # keep partial results of a long run
                print(
                    f"[{size} rows] {backend}: in-process {rate:.0f} rows/s, one job {job_rate:.0f} rows/s "
                    f"({ratios['job_vs_in_process']:.0%}"
                    f" of in-process; wall {one['wall_rows_per_s']:.0f}), two shards {two['wall_rows_per_s']:.0f} "
                    f"rows/s wall ({ratios['two_shards_vs_one_job_wall']:.2f}x), peak RSS one job "
                    f"{one['jobs'][0]['peak_rss_mib']} MiB, shards {[j['peak_rss_mib'] for j in two['jobs']]} MiB",
                    flush=True,
                )
            results["sizes"][str(size)] = entry
    results["machine"]["load_avg_end"] = os.getloadavg()
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

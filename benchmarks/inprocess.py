"""The model's own limit, in process: single-review latency and batch throughput (1 and 2 processes)."""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable
from typing import Any

from reviewserve.model import Predictor


def percentile(values: list[float], q: float) -> float:
    """q-th percentile (0-100), nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _latency(call: Callable[[list[str]], Any], texts: list[str], n: int) -> dict[str, float]:
    for text in texts[:200]:  # warm-up
        call([text])
    times = []
    for i in range(n):
        text = texts[i % len(texts)]
        started = time.perf_counter()
        call([text])
        times.append(time.perf_counter() - started)
    return {
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": percentile(times, 99) * 1000,
        "mean_ms": statistics.fmean(times) * 1000,
    }


def _batch_rows_per_s(predictor: Predictor, texts: list[str], batch: int, seconds: float) -> float:
    """Rows/s predicting ``batch``-review lists back to back for about ``seconds``."""
    lists = [[texts[(i + k) % len(texts)] for k in range(batch)] for i in range(0, max(batch, 4096), batch)]
    predictor.predict(lists[0])
    rows, started, i = 0, time.perf_counter(), 0
    while True:
        predictor.predict(lists[i % len(lists)])
        rows += batch
        i += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return rows / elapsed


_SHARED: dict[str, Any] = {}


def _worker(args: tuple[int, float]) -> float:
    batch, seconds = args
    return _batch_rows_per_s(_SHARED["predictor"], _SHARED["texts"], batch, seconds)


def parallel_rows_per_s(predictor: Predictor, texts: list[str], batch: int, seconds: float, processes: int) -> float:
    """Summed rows/s of ``processes`` forked processes predicting at once (the same cores as the servers)."""
    _SHARED.update(predictor=predictor, texts=texts)
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        return sum(pool.map(_worker, [(batch, seconds)] * processes))


def measure(predictor: Predictor, texts: list[str], n: int = 2000, seconds: float = 5.0, processes: int = 2) -> dict:
    """Every in-process figure the report uses."""
    started = time.perf_counter()
    big = [texts[i % len(texts)] for i in range(10_000)]
    predictor.predict(big[:100])
    batch_times = []
    for _ in range(3):
        t0 = time.perf_counter()
        predictor.predict(big)
        batch_times.append(time.perf_counter() - t0)
    return {
        "predictor_single": _latency(predictor.predict, texts, n),
        "predict_proba_single": _latency(predictor.estimator.predict_proba, texts, n),
        "batch10k_rows_per_s_1proc": 10_000 / min(batch_times),
        f"batch10k_rows_per_s_{processes}proc": parallel_rows_per_s(predictor, big, 10_000, seconds, processes),
        "batch32_rows_per_s_1proc": _batch_rows_per_s(predictor, texts, 32, seconds),
        f"batch32_rows_per_s_{processes}proc": parallel_rows_per_s(predictor, texts, 32, seconds, processes),
        "processes": processes,
        "model_load_s": predictor.load_seconds,
        "wall_s": time.perf_counter() - started,
    }

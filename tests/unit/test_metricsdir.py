"""The metrics folder's life (web/metricsdir.py) on real prometheus_client files: claim, sweep, fold, scrape."""

from __future__ import annotations

import fcntl
import itertools
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from reviewserve.web import metricsdir
from tests.promtext import sample

COUNTER = ("reviewserve_predictions", "reviewserve_predictions_total", ("label",), ("positive",), "Reviews scored.")
HIST = "reviewserve_positive_probability"
HELP = "Positive-class probability."


def write_worker(folder: Path, pid: int | str, count: float, observed: list[float]) -> None:
    """Files as a worker ``pid`` writes them: a counter, a histogram (raw buckets + _sum), a max gauge."""
    counter = MmapedDict(str(folder / f"counter_{pid}.db"))
    counter.write_value(mmap_key(*COUNTER), count, 0.0)
    counter.close()
    hist = MmapedDict(str(folder / f"histogram_{pid}.db"))
    for low, le in ((float("-inf"), "0.5"), (0.5, "1.0"), (1.0, "+Inf")):  # raw buckets: (low, le]
        n = sum(1 for v in observed if low < v <= float(le))
        hist.write_value(mmap_key(HIST, HIST + "_bucket", ["le"], [le], HELP), float(n), 0.0)
    hist.write_value(mmap_key(HIST, HIST + "_sum", [], [], HELP), sum(observed), 0.0)
    hist.close()
    gauge = MmapedDict(str(folder / f"gauge_max_{pid}.db"))
    gauge.write_value(mmap_key("reviewserve_model_info", "reviewserve_model_info", [], [], "Model."), 1.0, 0.0)
    gauge.close()


def scrape(folder: Path) -> str:
    """What /metrics shows for ``folder``."""
    registry = CollectorRegistry()
    metricsdir.FoldAwareCollector(registry, path=str(folder))
    return generate_latest(registry).decode()


def test_fold_moves_a_worker_into_the_archive_and_keeps_every_total(tmp_path: Path) -> None:
    write_worker(tmp_path, 101, 5, [0.2, 0.7, 0.9])
    write_worker(tmp_path, 102, 3, [0.1])
    before = scrape(tmp_path)
    assert metricsdir.fold(101, tmp_path) == 3
    assert metricsdir.fold(101, tmp_path) == 0, "a second fold of the same pid finds nothing"
    names = sorted(p.name for p in tmp_path.glob("*.db"))
    assert names == [
        "counter_102.db",
        "counter_archive.db",
        "gauge_max_102.db",
        "histogram_102.db",
        "histogram_archive.db",
    ]
    after = scrape(tmp_path)
    for metric, labels in [
        ("reviewserve_predictions_total", {"label": "positive"}),
        (HIST + "_count", {}),
        (HIST + "_sum", {}),
        (HIST + "_bucket", {"le": "0.5"}),
        (HIST + "_bucket", {"le": "1.0"}),
    ]:
        assert sample(after, metric, **labels) == sample(before, metric, **labels), metric
    assert sample(after, "reviewserve_predictions_total") == 8
    assert sample(after, HIST + "_count") == 4
    metricsdir.fold(102, tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["counter_archive.db", "histogram_archive.db"]
    assert sample(scrape(tmp_path), "reviewserve_predictions_total") == 8
    assert sample(scrape(tmp_path), "reviewserve_model_info") is None, "a dead worker's gauge drops out"


def test_folder_stays_bounded_over_many_recycles(tmp_path: Path) -> None:
    for pid in range(1000, 1300):
        write_worker(tmp_path, pid, 1, [0.5])
        metricsdir.fold(pid, tmp_path)
        assert len(list(tmp_path.glob("*.db"))) == 2
    assert sample(scrape(tmp_path), "reviewserve_predictions_total") == 300
    assert sample(scrape(tmp_path), HIST + "_count") == 300


def _float_trap() -> tuple[float, float, float]:
    """Archive _sum a, workers 200 (b) and 300 (c) such that folding 200 rounds the total down.

    A scrape adds the files in name order (200, 300, archive): (b + c) + a. After the fold the archive
    holds a + b and the scrape adds c + (a + b), which for these values is one ulp lower.
    """
    rng = random.Random(14)
    while True:
        a, b, c = (rng.uniform(0, 1000) for _ in range(3))
        if (b + c) + a > c + (a + b):
            return a, b, c


def test_a_fold_never_lowers_a_float_total(tmp_path: Path) -> None:
    """Folding changes the order of the float additions; the archive takes the rounding, never the total."""
    a, b, c = _float_trap()
    hist = MmapedDict(str(tmp_path / "histogram_archive.db"))
    hist.write_value(mmap_key(HIST, HIST + "_sum", [], [], HELP), a, 0.0)
    hist.close()
    write_worker(tmp_path, 200, 1, [b])
    write_worker(tmp_path, 300, 1, [c])
    before = sample(scrape(tmp_path), HIST + "_sum")
    assert before == (b + c) + a
    metricsdir.fold(200, tmp_path)
    after = sample(scrape(tmp_path), HIST + "_sum")
    assert after is not None and after >= before, "the histogram's _sum went down: a counter reset to Prometheus"
    assert after - before < 1e-9, "raised by the rounding only"
    assert sample(scrape(tmp_path), HIST + "_count") == 2


def test_scrape_waits_for_a_fold_in_progress(tmp_path: Path) -> None:
    write_worker(tmp_path, 101, 5, [0.2])
    lock = os.open(tmp_path / metricsdir.FOLD_LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)  # as a folding master holds it
    done: list[str] = []
    reader = threading.Thread(target=lambda: done.append(scrape(tmp_path)))
    reader.start()
    time.sleep(0.3)
    assert not done, "a scrape read the files while a fold held the lock"
    os.close(lock)
    reader.join(timeout=5)
    assert done and sample(done[0], "reviewserve_predictions_total") == 5


def test_claim_makes_a_locked_folder_per_server_and_sweeps_dead_ones(tmp_path: Path) -> None:
    """Two processes claim the same base: two folders; the one of a process that is gone is swept."""
    code = (
        "import sys, time; from pathlib import Path; from reviewserve.web import metricsdir;"
        "print(metricsdir.claim(Path(sys.argv[1])), flush=True); time.sleep(float(sys.argv[2]))"
    )
    live = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), "30"], stdout=subprocess.PIPE, text=True)
    try:
        live_folder = Path(live.stdout.readline().strip())  # type: ignore[union-attr]
        (live_folder / "counter_7.db").write_bytes(b"\0" * 8)
        killed = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), "30"], stdout=subprocess.PIPE, text=True)
        dead_folder = Path(killed.stdout.readline().strip())  # type: ignore[union-attr]
        killed.kill()  # like kill -9: no exit handler runs, the folder stays behind...
        killed.wait()
        assert dead_folder.is_dir() and dead_folder != live_folder
        exited = subprocess.run([sys.executable, "-c", code, str(tmp_path), "0"], capture_output=True, text=True)
        assert exited.returncode == 0, exited.stderr
        assert not Path(exited.stdout.strip()).exists(), "a server that exits removes its folder"
        assert not dead_folder.exists(), "...until the next server starts"
        assert (live_folder / "counter_7.db").exists(), "a live server's folder is never touched"
    finally:
        live.kill()
        live.wait()


def test_claim_is_idempotent_and_sets_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metricsdir, "_claimed", {})
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    try:
        folder = metricsdir.claim(tmp_path)
        assert metricsdir.claim(tmp_path) == folder
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(folder)
        assert folder.parent == tmp_path and folder.name.startswith(f"server-{os.getpid()}-")
        assert metricsdir.sweep(tmp_path) == [], "this process holds its folder's lock"
    finally:
        metricsdir.release()
    assert not folder.exists()


def test_usage_counts_files_and_allocated_bytes(tmp_path: Path) -> None:
    for pid in itertools.islice(itertools.count(1), 3):
        write_worker(tmp_path, pid, 1, [0.1])
    used = metricsdir.usage(tmp_path)
    assert used["files"] == 9 and used["bytes"] > 0

"""How `make bench-overload` judges recovery after an overload (benchmarks/overload_report.py)."""

from __future__ import annotations

from benchmarks.overload_report import WINDOW_S, _recovery

RATE = 200  # requests per second in the synthetic stretch (100 per 0.5 s window)
SECONDS = 5.0


def _stretch(slow: dict[int, float], start: float = 40.0) -> tuple[dict, list[int]]:
    """Records of a stretch at 1.0x: every request answered in 10 ms, except in the ``slow`` windows (ms)."""
    rec: dict = {"due": [], "latency": [], "status": [], "shed": []}
    for i in range(int(RATE * SECONDS)):
        due = start + i / RATE
        window = int((due - start) / WINDOW_S)
        rec["due"].append(due)
        rec["latency"].append(slow.get(window, 10.0) / 1000)
        rec["status"].append(200)
        rec["shed"].append(False)
    return rec, list(range(len(rec["due"])))


def test_back_at_once_when_every_window_is_near_the_baseline() -> None:
    rec, idx = _stretch({})
    assert _recovery(rec, idx, 40.0, SECONDS, 10.0, []) == (0.0, 0)


def test_a_slow_window_counts_until_every_later_window_is_good() -> None:
    rec, idx = _stretch({0: 80.0, 1: 40.0, 6: 61.0})
    assert _recovery(rec, idx, 40.0, SECONDS, 10.0, []) == (3.5, 0)  # the window at 3.0 s was slow


def test_never_back_when_the_last_window_is_slow() -> None:
    rec, idx = _stretch({9: 30.0})
    assert _recovery(rec, idx, 40.0, SECONDS, 10.0, []) == (None, 0)


def test_a_window_the_generator_stalled_in_is_not_judged() -> None:
    rec, idx = _stretch({0: 80.0, 6: 61.0})
    stall = [[43.2, 0.023]]  # requests due at 43.2 s left 23 ms late: window 6 (43.0-43.5 s)
    assert _recovery(rec, idx, 40.0, SECONDS, 10.0, stall) == (0.5, 1)
    assert _recovery(rec, idx, 40.0, SECONDS, 10.0, []) == (3.5, 0)  # judging it too


def test_the_window_after_a_stall_near_its_end_is_not_judged_either() -> None:
    rec, idx = _stretch({7: 45.0})
    stall = [[43.45, 0.02]]  # ends at 43.47 s: its burst still queues at 43.5 s, in window 7
    assert _recovery(rec, idx, 40.0, SECONDS, 10.0, stall) == (0.0, 2)
    far = [[43.1, 0.02]]  # ends 0.36 s before window 7: that window is judged
    assert _recovery(rec, idx, 40.0, SECONDS, 10.0, far) == (4.0, 1)


def test_recovery_starts_at_a_judged_window_not_an_unjudged_one() -> None:
    rec, idx = _stretch({0: 80.0, 1: 80.0})
    stall = [[40.6, 0.01]]  # window 1 not judged: back from window 2 (1.0 s), not from window 1
    assert _recovery(rec, idx, 40.0, SECONDS, 10.0, stall) == (1.0, 1)


def test_not_back_when_only_unjudged_windows_follow_the_slow_ones() -> None:
    rec, idx = _stretch({k: 80.0 for k in range(9)})
    stall = [[44.6, 0.01]]  # the last window is the only one after the slow ones, and it is not judged
    assert _recovery(rec, idx, 40.0, SECONDS, 10.0, stall) == (None, 1)

"""Admission control of one worker: how much work waits, and whether one more request may join it.

A worker computes one request at a time; the requests it has accepted but not started wait in its event loop.
Each admitted request adds its estimated service time to the work waiting; it leaves the line when it starts.
A new request is refused (shed) when the work already waiting is more than ``MAX_QUEUE_MS``: it would wait
longer than that behind the others, so it is better answered 503 at once and retried (possibly elsewhere).

Estimates are learned per body-size class (powers of two of ``Content-Length``) from the CPU time of the worker's
own requests (not wall time, which other processes on the machine would inflate), smoothed (EWMA). A class not
yet seen is estimated from a prior of :data:`PRIOR_SECONDS` + :data:`PRIOR_SECONDS_PER_BYTE` x size, a little
above the committed model's costs (a single review ~0.3 ms, 64 reviews of 5,000 characters ~0.25 s), so a
flood of large requests arriving before the first has finished is not admitted as if it were free.
"""

from __future__ import annotations

PRIOR_SECONDS = 0.0005
PRIOR_SECONDS_PER_BYTE = 1e-6
SMOOTHING = 0.2  # weight of the newest measurement in a class's estimate
OUTLIER_FACTOR = 4.0  # a measurement counts for at most this many times the current estimate
SIZE_CLASSES = 64  # bit lengths of a Content-Length


def size_class(size: int) -> int:
    """The class of a body of ``size`` bytes: its bit length (0 for no or an unknown length)."""
    return min(max(size, 0).bit_length(), SIZE_CLASSES - 1)


class AdmissionQueue:
    """The work waiting in one worker, in seconds, against a budget of ``max_queue_seconds``."""

    __slots__ = ("_estimates", "max_queue_seconds", "waiting", "waiting_seconds")

    def __init__(self, max_queue_seconds: float) -> None:
        self.max_queue_seconds = max_queue_seconds
        self.waiting_seconds = 0.0  # estimated work of the admitted requests not started yet
        self.waiting = 0  # how many they are
        self._estimates: list[float | None] = [None] * SIZE_CLASSES

    def estimate(self, size: int) -> float:
        """Estimated service seconds of a request with a body of ``size`` bytes."""
        learned = self._estimates[size_class(size)]
        return learned if learned is not None else PRIOR_SECONDS + PRIOR_SECONDS_PER_BYTE * max(size, 0)

    def over_budget(self) -> bool:
        """Whether more than ``max_queue_seconds`` of work waits: a request arriving now is shed."""
        return self.waiting_seconds > self.max_queue_seconds

    def admit(self, size: int) -> float | None:
        """Let a request of ``size`` bytes join the line: its estimate, or None to shed it."""
        if self.over_budget():
            return None
        estimate = self.estimate(size)
        self.waiting_seconds += estimate
        self.waiting += 1
        return estimate

    def start(self, estimate: float) -> None:
        """An admitted request leaves the line (it starts, or its client is gone)."""
        self.waiting -= 1
        # max(): float sums drift; an empty line is exactly empty.
        self.waiting_seconds = max(0.0, self.waiting_seconds - estimate) if self.waiting else 0.0

    def finished(self, size: int, seconds: float) -> None:
        """Learn from a served request of ``size`` bytes that took ``seconds``."""
        cls = size_class(size)
        learned = self._estimates[cls]
        if learned is None:
            self._estimates[cls] = seconds
            return
        # A sample counts for at most OUTLIER_FACTOR x the estimate: a request that waited for its body counts the
        # CPU of the requests served meanwhile (one thread); it should not shed everything behind it. A real
        # change still shows within a few requests (x1.6 per request).
        seconds = min(seconds, OUTLIER_FACTOR * learned)
        self._estimates[cls] = learned + SMOOTHING * (seconds - learned)

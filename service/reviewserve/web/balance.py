"""Keep-alive connections spread evenly over the gunicorn workers.

A kept-alive connection stays with the worker that accepted it. When a worker is recycled (``MAX_REQUESTS``)
or dies, its clients reconnect at once, before the master has forked the replacement, so they all land on
the surviving workers and stay there while the new worker idles: the service runs on fewer cores than it
has. Each worker therefore publishes how many active connections it holds (ones that had a request answered
in the last second: idle and trickling connections cost no CPU and do not count) in a small table in shared memory
(created by the master before forking, like :mod:`reviewserve.web.lifecycle`), and a worker holding more
than its fair share (the live workers' connections divided evenly, rounded up) stops accepting and closes
the excess after their current response (``Connection: close``), so those clients reconnect to a worker
that has room.
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing
import time

SLOTS = 512  # more than any sane worker count, recycled ones included until their entries go stale
STALE_SECONDS = 2.0  # an entry not refreshed this long belongs to a worker that is gone (kill -9)
_FIELDS = 3  # pid, connections, last refresh (CLOCK_MONOTONIC: one clock for every process)
_table = multiprocessing.RawArray(ctypes.c_double, SLOTS * _FIELDS)


class ConnectionBalancer:
    """One worker's entry in the shared table."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.slot = self._claim()

    def _claim(self) -> int:
        now = time.monotonic()
        for slot in range(SLOTS):
            base = slot * _FIELDS
            if _table[base] == 0 or now - _table[base + 2] > STALE_SECONDS:
                _table[base], _table[base + 1], _table[base + 2] = self.pid, 0, now
                return slot
        raise RuntimeError("no free connection-balancer slot")  # only with more than SLOTS live workers

    def excess(self, connections: int) -> int:
        """Publish ``connections``; return how many of them are above this worker's fair share."""
        now = time.monotonic()
        base = self.slot * _FIELDS
        if _table[base] != self.pid:  # taken over after a stall longer than STALE_SECONDS
            self.slot = self._claim()
            base = self.slot * _FIELDS
        _table[base + 1], _table[base + 2] = connections, now
        total = workers = 0
        for slot in range(SLOTS):
            entry = slot * _FIELDS
            if _table[entry] and now - _table[entry + 2] <= STALE_SECONDS:
                workers += 1
                total += int(_table[entry + 1])
        return max(0, connections - math.ceil(total / max(workers, 1)))

    def release(self) -> None:
        """Leave the table (the worker is exiting)."""
        base = self.slot * _FIELDS
        if _table[base] == self.pid:
            _table[base], _table[base + 1], _table[base + 2] = 0, 0, 0

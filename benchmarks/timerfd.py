"""A Linux timerfd: a file descriptor that turns readable at a set time, to the microsecond.

The open-loop generator's ``timerfd`` clock sends each request at its due time. An asyncio timer
cannot: the loop waits in ``epoll_wait``, whose timeout is whole milliseconds (rounded up), so a request
due in 0.3 ms leaves up to ~1 ms late, and that lag counts in its latency (measured: generator lag p99
1.7 ms, against 0.1-0.3 ms with this timer; docs/benchmarking.md). A timerfd's expiry has nanosecond
resolution and no timer slack, and the loop watches it like a socket (``loop.add_reader``).
``os.timerfd_create`` only exists from Python 3.13; this calls the same two libc functions through
ctypes. Times are ``time.perf_counter()`` seconds, which is ``CLOCK_MONOTONIC`` on Linux.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time

CLOCK_MONOTONIC = 1
TFD_NONBLOCK = os.O_NONBLOCK
TFD_CLOEXEC = os.O_CLOEXEC
TFD_TIMER_ABSTIME = 1

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class Timerfd:
    """A one-shot monotonic timer as a non-blocking file descriptor (readable once it has expired)."""

    def __init__(self) -> None:
        if time.get_clock_info("perf_counter").implementation != "clock_gettime(CLOCK_MONOTONIC)":
            raise OSError("a timerfd needs time.perf_counter() to be CLOCK_MONOTONIC (Linux)")
        fd = _libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_create: {os.strerror(err)}")
        self.fd: int = fd

    def fileno(self) -> int:
        """The descriptor to watch for readability."""
        return self.fd

    def set_at(self, when: float) -> None:
        """Expire at ``when`` (``time.perf_counter()`` seconds); a time already past expires at once."""
        when = max(when, 1e-9)  # 0 would disarm the timer
        seconds = int(when)
        spec = _Itimerspec(_Timespec(0, 0), _Timespec(seconds, int((when - seconds) * 1e9)))
        if _libc.timerfd_settime(self.fd, TFD_TIMER_ABSTIME, ctypes.byref(spec), None) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_settime: {os.strerror(err)}")

    def clear(self) -> int:
        """Consume the expiry (the descriptor is no longer readable); the number of expiries, 0 if none."""
        try:
            return int.from_bytes(os.read(self.fd, 8), "little")
        except BlockingIOError:
            return 0

    def close(self) -> None:
        """Release the descriptor."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Timerfd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

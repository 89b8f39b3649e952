"""``--retry-for``: ride out a database outage (lost connection, restart, ``database is locked``).

A transient error (the store's ``transient(exc)`` says which) is retried with exponential backoff
(0.5 s doubling to at most 8 s), one log line per attempt, until the outage has lasted ``retry_for``
seconds; then :class:`Unavailable` (one line naming what failed) ends the job. The window restarts
after every chunk that commits.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("reviewserve.batch")
FIRST_DELAY = 0.5
MAX_DELAY = 8.0


class Unavailable(RuntimeError):
    """The database stayed unavailable for longer than ``--retry-for`` (message: one line)."""


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (a driver's text can run over many lines: SQL, hints, links)."""
    cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's exception
    message = (str(cause).strip().splitlines() or [""])[0].strip()
    return f"{type(cause).__name__}: {message}" if message else type(cause).__name__


class Retry:
    """Backoff state of one outage; ``ok()`` after a success, ``wait(exc)`` after a transient error."""

    def __init__(self, retry_for: float, *, sleep: object = time.sleep) -> None:
        self.retry_for = retry_for
        self._sleep = sleep
        self.outage_started: float | None = None
        self.attempt = 0
        self.attempts_total = 0

    def ok(self) -> None:
        """The last operation succeeded: the next failure starts a new outage."""
        self.outage_started = None
        self.attempt = 0

    def wait(self, exc: BaseException, what: str = "database") -> None:
        """Sleep before the next attempt, or raise :class:`Unavailable` once the window is spent."""
        now = time.monotonic()
        if self.outage_started is None:
            self.outage_started = now
        elapsed = now - self.outage_started
        reason = first_line(exc)
        if elapsed >= self.retry_for:
            raise Unavailable(
                f"{what} unavailable for {elapsed:.1f} s (--retry-for {self.retry_for:g}): {reason}"
            ) from None
        self.attempt += 1
        self.attempts_total += 1
        delay = min(FIRST_DELAY * 2 ** (self.attempt - 1), MAX_DELAY, max(self.retry_for - elapsed, 0.05))
        log.warning(
            f"{what} unavailable, retrying",
            extra={"attempt": self.attempt, "retry_in_s": round(delay, 2), "outage_s": round(elapsed, 1),
                   "retry_for_s": self.retry_for, "error": reason},
        )  # fmt: skip
        self._sleep(delay)  # type: ignore[operator]

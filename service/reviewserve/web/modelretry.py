"""A model that failed to load is retried with backoff until it loads: the server turns ready without a restart.

Under gunicorn the app is preloaded in the master, so the retry runs there too (a thread of the master):
once the model loads, the master's workers are stopped gracefully and the arbiter forks their replacements
from the master, which now holds the verified model (the same copy-on-write sharing as a first load). Until
then every worker answers ``/readyz`` with the latest reason, read from memory shared across the fork.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import multiprocessing
import threading
from collections.abc import Callable

from reviewserve.web import lifecycle

log = logging.getLogger(__name__)

FIRST_DELAY_SECONDS = 1.0
_REASON_BYTES = 2048
_reason = multiprocessing.RawArray(ctypes.c_char, _REASON_BYTES)  # created before the fork, seen by every worker


def set_reason(text: str) -> None:
    """Publish why the model is not loaded (empty: it is loaded) to this process and its workers."""
    data = text.encode("utf-8")[: _REASON_BYTES - 1]
    _reason.value = data.decode("utf-8", "ignore").encode("utf-8")


def reason() -> str:
    """The latest published reason ("" when none)."""
    return _reason.value.decode("utf-8", "replace")


class ModelRetry(threading.Thread):
    """Calls ``attempt`` with exponential backoff (1 s doubling up to ``max_delay``) until it returns None.

    ``attempt`` returns None on success or the reason of the failure; ``on_loaded`` runs after the success.
    The thread gives up when the server starts shutting down.
    """

    def __init__(
        self,
        attempt: Callable[[], str | None],
        on_loaded: Callable[[], None],
        max_delay: float,
        first_delay: float = FIRST_DELAY_SECONDS,
    ) -> None:
        super().__init__(name="reviewserve-model-retry", daemon=True)
        self.attempt = attempt
        self.on_loaded = on_loaded
        self.max_delay = max_delay
        self.delay = first_delay
        self.stopped = threading.Event()

    def run(self) -> None:
        """Retry until the model loads or the server stops."""
        attempts = 1  # the first one failed before this thread started
        while not self.stopped.wait(self.delay):
            if lifecycle.is_draining():
                return
            attempts += 1
            error = self.attempt()
            if error is None:
                set_reason("")
                log.info("model loaded after retrying", extra={"attempts": attempts})
                self.on_loaded()
                return
            self.delay = min(self.delay * 2, self.max_delay)
            set_reason(f"{error} (attempt {attempts}; next in {self.delay:g} s)")

    def stop(self) -> None:
        """Stop retrying (tests, shutdown)."""
        self.stopped.set()


def freeze_heap() -> None:
    """Freeze what the master holds now (the model included) so forked workers keep sharing its pages."""
    gc.collect()
    gc.freeze()

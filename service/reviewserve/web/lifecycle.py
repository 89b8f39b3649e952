"""Process-wide serving state shared between the gunicorn master and its forked workers.

The flag lives in anonymous shared memory created at import time; with ``preload_app`` the master
imports this module before forking, so the master's SIGTERM handler and every worker see one value.
"""

from __future__ import annotations

import ctypes
import multiprocessing

_draining = multiprocessing.RawValue(ctypes.c_bool, False)


def start_draining() -> None:
    """Mark the server as shutting down: readiness answers 503 from now on."""
    _draining.value = True


def reset() -> None:
    """Clear the shutdown mark (server start)."""
    _draining.value = False


def is_draining() -> bool:
    """True once SIGTERM was received."""
    return bool(_draining.value)

"""Progress of a run: a tqdm bar (rows/s, ETA) on a terminal, else one JSON log line per chunk."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger("reviewserve.batch")


class Progress:
    """Counts a run's rows; shows a bar on a terminal, logs a JSON line per chunk otherwise."""

    def __init__(self, total: int | None, *, bar: bool | None = None, label: str = "scoring") -> None:
        self.total = total
        self.started = time.perf_counter()
        self.read = self.scored = self.failed = self.chunks = 0
        use_bar = sys.stderr.isatty() if bar is None else bar
        self._bar: Any = None
        if use_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="rows", unit_scale=True, desc=label, dynamic_ncols=True)

    @property
    def seconds(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.started

    def chunk(self, scored: int, failed: int, **where: Any) -> None:
        """Record one committed chunk."""
        self.chunks += 1
        self.read += scored + failed
        self.scored += scored
        self.failed += failed
        if self._bar is not None:
            self._bar.update(scored + failed)
            self._bar.set_postfix(failed=self.failed, refresh=False)
            return
        seconds = self.seconds
        log.info(
            "chunk committed",
            extra={
                "chunk": self.chunks,
                "rows": scored + failed,
                "failed_in_chunk": failed,
                "read": self.read,
                "scored": self.scored,
                "failed": self.failed,
                "total": self.total,
                "seconds": round(seconds, 3),
                "rows_per_s": round(self.read / seconds, 1) if seconds > 0 else None,
                **where,
            },
        )

    def close(self) -> None:
        """Close the bar (if any)."""
        if self._bar is not None:
            self._bar.close()

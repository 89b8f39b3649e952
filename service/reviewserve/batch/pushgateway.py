"""Push a run's metrics to a Prometheus Pushgateway, so a failed or missing nightly run can alert.

Pushed with ``pushadd`` (PUT of only these metric names into the group ``job=<job>, table=<name>,
shard=<K/N>``): ``reviewserve_batch_last_success_timestamp_seconds`` is only pushed by a run that
finished (exit 0 or 3), so after a crash the gateway still holds the previous success time and an
alert on ``time() - reviewserve_batch_last_success_timestamp_seconds`` fires.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

log = logging.getLogger("reviewserve.batch")
DEFAULT_JOB = "reviewserve_score"


def push_run(
    url: str,
    *,
    job: str = DEFAULT_JOB,
    grouping: dict[str, str],
    summary: dict[str, Any] | None,
    exit_code: int,
    duration: float,
    timeout: float = 10.0,
) -> bool:
    """Push the run's metrics; log and return False if the gateway cannot be reached (the run's result stands)."""
    registry = CollectorRegistry()

    def gauge(name: str, doc: str, value: float) -> None:
        Gauge(name, doc, registry=registry).set(value)

    summary = summary or {}
    gauge("reviewserve_batch_rows_read", "Rows read by the last run.", summary.get("read", 0))
    gauge("reviewserve_batch_rows_scored", "Rows scored (status ok) by the last run.", summary.get("scored", 0))
    gauge("reviewserve_batch_rows_failed", "Rows written with status error by the last run.", summary.get("failed", 0))
    gauge("reviewserve_batch_rows_skipped", "Rows already scored before the last run.", summary.get("skipped", 0))
    gauge("reviewserve_batch_null_ids", "Rows with a NULL id, skipped (SQL).", summary.get("null_ids", 0))
    gauge("reviewserve_batch_duration_seconds", "Duration of the last run.", duration)
    gauge("reviewserve_batch_exit_code", "Exit code of the last run (0 ok, 1 failed, 3 some rows failed).", exit_code)
    gauge("reviewserve_batch_last_run_timestamp_seconds", "When the last run ended.", time.time())
    if exit_code in (0, 3):
        gauge("reviewserve_batch_last_success_timestamp_seconds", "When a run last finished.", time.time())
    try:
        pushadd_to_gateway(url, job=job, registry=registry, grouping_key=grouping, timeout=timeout)
    except OSError as exc:
        log.warning("pushgateway push failed", extra={"pushgateway": url, "error": str(exc)})
        return False
    return True

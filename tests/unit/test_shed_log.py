"""The shed log: the first shed of a burst logged at once, then summaries, and the rest when the worker exits."""

from __future__ import annotations

import logging

import pytest

from reviewserve.web import shedding


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "reviewserve.shedding"]


def test_first_shed_logged_at_once_then_summaries(caplog: pytest.LogCaptureFixture, monkeypatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(shedding.time, "monotonic", lambda: clock[0])
    caplog.set_level(logging.WARNING, logger="reviewserve.shedding")
    shed_log = shedding.ShedLog()
    shed_log.shed(20, 3, 0.025)
    assert _lines(caplog) == [
        "overloaded: shed 1 request(s) in 0.0 s (more than MAX_QUEUE_MS=20 ms of work waiting; "
        "last: 3 requests, 25.0 ms)"
    ]
    for _ in range(5):  # within SUMMARY_SECONDS of the last line: counted, not logged
        clock[0] += 1
        shed_log.shed(20, 4, 0.030)
    assert len(_lines(caplog)) == 1 and shed_log.unreported == 5
    clock[0] += shedding.SUMMARY_SECONDS
    shed_log.shed(20, 2, 0.021)
    # 6 sheds, the first of them 14 s before this line
    assert _lines(caplog)[-1].startswith("overloaded: shed 6 request(s) in 14.0 s ")
    clock[0] += 1
    shed_log.shed(20, 2, 0.021)
    shed_log.flush()  # the worker exits: nothing is left unreported
    shed_log.flush()  # and nothing is logged twice
    assert _lines(caplog)[-1].startswith("overloaded: shed 1 request(s) in 0.0 s ") and len(_lines(caplog)) == 3


def test_sheds_reach_the_metric_when_published() -> None:
    # An increment of a multiprocess counter costs a system call: sheds are added to it in batches.
    shed_log = shedding.ShedLog()
    shed_log.shed(20, 1, 0.021)  # the first of a burst: logged at once, and published with its line
    before = shedding.SHED._value.get()
    for _ in range(3):
        shed_log.shed(20, 1, 0.021)
    assert shedding.SHED._value.get() == before  # counted, not published yet
    shedding.publish_sheds()  # what /metrics does first (the worker also publishes every 50 ms)
    assert shedding.SHED._value.get() == before + 3
    shed_log.shed(20, 1, 0.021)
    shed_log.flush()  # the worker exits: the last ones are published too
    shedding.publish_sheds()
    assert shedding.SHED._value.get() == before + 4

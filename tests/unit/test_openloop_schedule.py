"""The open-loop generator's clock (benchmarks/timerfd.py) and schedule: every request on time, none early."""

from __future__ import annotations

import asyncio
import select
import time

import pytest

from benchmarks.openloop import CLOCKS, STALL_S, Generator, Phase, build_requests
from benchmarks.timerfd import Timerfd


def _readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def test_timerfd_turns_readable_at_its_time_not_before() -> None:
    with Timerfd() as timer:
        when = time.perf_counter() + 0.05
        timer.set_at(when)
        assert not _readable(timer.fileno(), 0)
        assert _readable(timer.fileno(), 2.0)
        assert time.perf_counter() >= when
        assert timer.clear() == 1
        assert not _readable(timer.fileno(), 0)  # consumed
        assert timer.clear() == 0

        timer.set_at(time.perf_counter() - 1.0)  # a time already past: at once
        assert _readable(timer.fileno(), 0.5)


_arrivals: list[float] = []  # when each request's bytes reached the server (perf_counter)


class _Server(asyncio.Protocol):
    """Answers each request at once (200, a small JSON body) and notes when its bytes arrived."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, rest = self.buffer.split(b"\r\n\r\n", 1)
            length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            _arrivals.append(time.perf_counter())
            body = b'{"prediction": 0.5}'
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def _run(phases: list[Phase], clock: str, stall_at: float | None = None) -> Generator:
    """Offer ``phases`` to a :class:`_Server` on loopback; ``stall_at``: block the event loop 30 ms at that time."""

    async def main() -> Generator:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        gen = Generator(url, build_requests(url, ['{"review": "fine"}'], "/predict"), 50, 5.0)
        gen.t0 = time.perf_counter()
        if stall_at is not None:
            loop.call_later(stall_at, time.sleep, 0.03)  # the generator's process does not run for 30 ms
        await gen.run(phases, clock)
        server.close()
        await server.wait_closed()
        return gen

    _arrivals.clear()
    return asyncio.run(main())


@pytest.mark.parametrize("clock", CLOCKS)
def test_requests_leave_at_their_due_times_in_order_and_none_early(clock: str) -> None:
    # two phases: the second's schedule starts where the first's ends, whatever the first's last request did
    gen = _run([Phase("a", 400.0, 0.25), Phase("b", 1000.0, 0.2)], clock)
    records = gen.records
    assert len(records.status) == 100 + 200
    assert set(records.status) == {200}
    scheduled = sorted(zip(records.due, records.phase, strict=True))  # recorded as answered: sort by due time
    assert [phase for _, phase in scheduled] == [0] * 100 + [1] * 200
    dues = [due for due, _ in scheduled]
    expected = [i / 400.0 for i in range(100)] + [0.25 + i / 1000.0 for i in range(200)]
    assert max(abs(due - dues[0] - want) for due, want in zip(dues, expected, strict=True)) < 1e-6
    # arrival at the server (same process, same clock) is never before the request's due time
    arrivals = sorted(a - gen.t0 for a in _arrivals)
    assert len(arrivals) == 300
    assert all(arrived >= due for arrived, due in zip(arrivals, dues, strict=True))


@pytest.mark.parametrize("clock", CLOCKS)
def test_a_generator_stall_is_recorded_with_when_and_how_late(clock: str) -> None:
    gen = _run([Phase("a", 500.0, 0.6)], clock, stall_at=0.3)
    assert set(gen.records.status) == {200}
    # the requests due during the sleep left together after it: one stall, starting within it, ~30 ms late
    at_sleep = [(due, late) for due, late in gen.stalls if 0.29 <= due <= 0.45]  # the timer may fire late
    assert at_sleep, gen.stalls
    assert max(late for _, late in at_sleep) >= 0.025
    assert all(late > STALL_S for _, late in gen.stalls)  # only lateness beyond STALL_S is a stall

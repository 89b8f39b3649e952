"""Overload on a real gunicorn (issue 15): probes that answer whatever the workers do, excess shed fast.

- Probes on HEALTH_PORT (answered by the master) stay fast while every worker is saturated by 64 x 5,000
  character lists, on 1 and 2 workers; the main port's probes are shown to wait meanwhile.
- They keep their meaning: readiness 503 while draining and when the model was refused, liveness 503 when the
  only worker is stuck past TIMEOUT (and 200 again once gunicorn has replaced it).
- An open loop at ~2x the measured capacity: the excess is answered 503 ``overloaded`` with Retry-After, fast,
  the rest served at nearly full capacity, and every shed counted in reviewserve_requests_shed_total.
- A request whose client closed the connection while it waited is never scored (metrics and the log).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time

import pytest
import requests

from tests.conftest import Server
from tests.integration.overload_clients import ClosedLoop, Prober, list_body, open_loop, percentile
from tests.promtext import sample

pytestmark = pytest.mark.slow

MAX_LIST = list_body(64, 5000)  # the largest request the defaults accept (~0.25 s of model time)
MEDIUM_LIST = list_body(32, 90)  # 32 sentence-sized reviews: a few ms, so Python clients can offer 2x
# A probe answer in this long is far from the chart's probe timeouts (2-3 s); the 100 ms p99 target is
# measured by `make bench-overload` on a quiet machine, not asserted on this shared one.
PROBE_BOUND_SECONDS = 0.5


def metrics(server: Server) -> str:
    return requests.get(f"{server.health_url}/metrics", timeout=10).text


def shed_total(server: Server, expected: float) -> float:
    """``reviewserve_requests_shed_total`` once it reaches ``expected`` (or after 5 s): a worker publishes its
    sheds every 50 ms."""
    deadline = time.monotonic() + 5
    while (value := sample(metrics(server), "reviewserve_requests_shed_total")) < expected:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return value


@pytest.mark.parametrize("workers", [1, 2])
def test_probes_answer_while_workers_are_saturated(server_factory, workers: int) -> None:
    # MAX_QUEUE_MS=0: no shedding, so the workers' event loops hold a long line of large requests.
    server: Server = server_factory(workers=workers, MAX_QUEUE_MS="0")
    server.wait_workers(workers)
    with ClosedLoop(server.url, MAX_LIST, clients=6 * workers) as load:
        time.sleep(2)  # let the line build up
        with Prober(server.health_url) as prober:
            started = time.perf_counter()
            with contextlib.suppress(requests.Timeout):  # the main port's probe, for contrast: it waits
                requests.get(f"{server.url}/healthz", timeout=30)
            main_port = time.perf_counter() - started
            time.sleep(max(0.0, 3 - main_port))
    answered = [a for a in load.answers if a.status == 200]
    assert answered and all(a.status == 200 for a in load.answers)
    assert main_port > 0.5, f"the main port was not saturated: /healthz in {main_port:.2f} s"
    for path in ("/healthz", "/readyz"):
        statuses, latencies = prober.statuses(path), prober.latencies(path)
        assert len(statuses) >= 20 and set(statuses) == {200}, statuses
        assert percentile(latencies, 0.99) < PROBE_BOUND_SECONDS, sorted(latencies)[-5:]
        print(
            f"{workers} worker(s) {path}: p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms over {len(latencies)} probes; "
            f"main port /healthz {main_port:.2f} s"
        )


def test_readiness_503_while_draining_liveness_200(server_factory) -> None:
    server: Server = server_factory(workers=1, SHUTDOWN_DELAY="3")
    assert requests.get(f"{server.health_url}/readyz", timeout=5).status_code == 200
    server.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 2.5
    ready = requests.get(f"{server.health_url}/readyz", timeout=5)
    while ready.status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
        ready = requests.get(f"{server.health_url}/readyz", timeout=5)
    assert ready.status_code == 503 and ready.json()["reason"] == "shutting down"
    assert requests.get(f"{server.health_url}/healthz", timeout=5).status_code == 200  # draining is not dead
    assert server.process.wait(timeout=30) == 0


def test_refused_model_is_unready_but_alive(server_factory, model_copy) -> None:
    (model_copy / "card.json").write_text(
        json.dumps({**json.loads((model_copy / "card.json").read_text()), "model_sha256": "0" * 64})
    )
    server: Server = server_factory(workers=1, wait=False, MODEL_PATH=str(model_copy))
    server.wait_ready(path="/readyz", status=503)
    ready = requests.get(f"{server.health_url}/readyz", timeout=5)
    assert ready.status_code == 503 and "model not loaded" in ready.json()["reason"]
    assert requests.get(f"{server.health_url}/healthz", timeout=5).status_code == 200


def test_liveness_fails_when_the_worker_is_stuck(server_factory) -> None:
    server: Server = server_factory(workers=1, TIMEOUT="3")
    [pid] = server.wait_workers(1)
    os.kill(pid, signal.SIGSTOP)  # stuck: no heartbeat; gunicorn kills it after TIMEOUT and forks another
    try:
        with Prober(server.health_url, period=0.05) as prober:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and pid in server.worker_pids():
                time.sleep(0.1)
            server.wait_workers(1)
            time.sleep(1.5)  # the replacement's heartbeat
    finally:
        if pid in server.worker_pids():
            os.kill(pid, signal.SIGCONT)
    live = prober.statuses("/healthz")
    assert 503 in live, live
    assert live[0] == 200 and live[-1] == 200, live  # alive before, dead while stuck, alive after replacement
    assert 503 in prober.statuses("/readyz")
    assert pid not in server.worker_pids()


def test_open_loop_at_twice_capacity_sheds_the_excess_fast(server_factory) -> None:
    # MAX_QUEUE_MS above a medium list's time on a busy machine, so that measuring the capacity sheds nothing.
    server: Server = server_factory(workers=1, MAX_QUEUE_MS="100")
    server.wait_workers(1)
    # Capacity: a short closed loop of 2 clients (a worker computes one request at a time; with 2 clients one
    # request at most waits, so none is shed).
    with ClosedLoop(server.url, MEDIUM_LIST, clients=2):
        time.sleep(1)
    with ClosedLoop(server.url, MEDIUM_LIST, clients=2) as closed:
        time.sleep(3)
    capacity = sum(a.status == 200 for a in closed.answers) / 3
    assert capacity > 10, closed.answers[:5]
    shed_before = sample(metrics(server), "reviewserve_requests_shed_total")
    assert shed_before is not None

    seconds = 4
    answers = open_loop(server.url, MEDIUM_LIST, rate=2 * capacity, seconds=seconds)
    ok = [a for a in answers if a.status == 200]
    shed = [a for a in answers if a.status == 503]
    other = [a for a in answers if a.status not in (200, 503)]
    summary = (
        f"capacity {capacity:.0f}/s; offered {2 * capacity:.0f}/s for {seconds} s: {len(ok)} served "
        f"(p99 {percentile([a.seconds for a in ok], 0.99) * 1000:.0f} ms), {len(shed)} shed "
        f"(p50 {percentile([a.seconds for a in shed], 0.5) * 1000:.1f} ms, "
        f"p99 {percentile([a.seconds for a in shed], 0.99) * 1000:.1f} ms), {len(other)} other"
    )
    print(summary)
    assert not other, summary
    assert shed, summary
    assert all(a.code == "overloaded" and a.retry_after == "1" for a in shed)
    # Goodput near capacity (loosely: a shared machine), waiting bounded by MAX_QUEUE_MS + a request.
    assert len(ok) / seconds >= 0.6 * capacity, summary
    assert percentile([a.seconds for a in ok], 0.5) < 1.0, summary
    # Sheds are answered before anything is read or scored: well under a served request's time.
    assert percentile([a.seconds for a in shed], 0.5) < percentile([a.seconds for a in ok], 0.5), summary
    assert shed_total(server, shed_before + len(shed)) - shed_before == len(shed)
    assert requests.get(f"{server.health_url}/readyz", timeout=5).status_code == 200


def _post(path: str, body: bytes, headers: bytes = b"") -> bytes:
    """A whole keep-alive HTTP/1.1 POST of a JSON ``body``, sent in one write."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode() + headers
        + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    )  # fmt: skip


SMALL_POST = _post("/predict", json.dumps({"review": "fine"}).encode())


def _among_others(server: Server, sock: socket.socket, data: bytes, count: int) -> list:
    """Send ``data`` on ``sock`` amid 6 small POSTs on other connections; ``count`` answers read from ``sock``,
    and the time they were read (``time.monotonic()``) appended.

    With MAX_QUEUE_MS tiny a request is shed when another is already waiting in line, and the line is one
    request deep at most (every later one is shed). Whether the worker's line is empty when a request arrives
    depends on the order in which the event loop reads the connections that turned readable together. Sent in
    one burst while the worker computes a large list, with POSTs before and after it, ``data`` is read after
    one of them whichever that order is, and is shed. Run this under a closed loop of large lists.
    """
    others = [socket.create_connection(("127.0.0.1", server.port), timeout=60) for _ in range(6)]
    try:
        time.sleep(0.05)  # accepted: each waits for its request
        for other in others[:3]:
            other.sendall(SMALL_POST)
        sock.sendall(data)
        for other in others[3:]:
            other.sendall(SMALL_POST)
        answers: list = _read_answers(sock, count)  # first: a shed answer is there at once, others may be served
        answers.append(time.monotonic())
        for other in others:
            _read_answers(other, 1)
        return answers
    finally:
        for other in others:
            other.close()


def test_shed_answer_shape_and_v2(server_factory) -> None:
    server: Server = server_factory(workers=1, MAX_QUEUE_MS="0.001", RETRY_AFTER_SECONDS="2")
    server.wait_workers(1)
    infer = {"inputs": [{"name": "review", "shape": [1], "datatype": "BYTES", "data": ["superb"]}]}
    predict = _post("/predict", json.dumps({"review": "fine"}).encode(), b"X-Request-ID: shed-me-1\r\n")
    v2_request = _post("/v2/models/review-sentiment/infer", json.dumps(infer).encode())
    seen = v2 = None
    with ClosedLoop(server.url, MAX_LIST, clients=2):
        time.sleep(1)
        deadline = time.monotonic() + 60
        while (seen is None or v2 is None) and time.monotonic() < deadline:
            with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
                answer = _among_others(server, sock, predict, 1)[0]
                seen = answer if answer[0] == 503 else seen
                answer = _among_others(server, sock, v2_request, 1)[0]
                v2 = answer if answer[0] == 503 else v2
        assert requests.get(f"{server.url}/healthz", timeout=60).status_code == 200  # GET is never shed
    assert seen is not None and v2 is not None
    _, headers, body = seen
    assert headers["retry-after"] == "2" and headers["x-request-id"] == "shed-me-1"
    assert headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert doc == {"error": {"code": "overloaded", "message": doc["error"]["message"], "request_id": "shed-me-1"}}
    doc = json.loads(v2[2])
    assert doc["code"] == "overloaded" and isinstance(doc["error"], str) and doc["request_id"] == v2[1]["x-request-id"]


def test_request_of_a_client_that_left_is_not_scored(server_factory) -> None:
    # No shedding in the way (MAX_QUEUE_MS high): the request waits behind large lists, its client gives up.
    server: Server = server_factory(workers=1, MAX_QUEUE_MS="60000")
    server.wait_workers(1)
    before = metrics(server)
    assert sample(before, "reviewserve_requests_abandoned_total") == 0
    scored_before = sample(before, "reviewserve_predictions_total") or 0
    with ClosedLoop(server.url, MAX_LIST, clients=4) as load:
        time.sleep(0.5)
        body = json.dumps({"review": "the client will not wait for this one"}).encode()
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"X-Request-ID: gone-client-1\r\n" + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
            )
        time.sleep(2)
    after = metrics(server)
    lists = sum(a.status == 200 for a in load.answers)
    assert sample(after, "reviewserve_requests_abandoned_total") == 1
    assert sample(after, "reviewserve_predictions_total") - scored_before == 64 * lists  # not one review more
    deadline = time.monotonic() + 5
    lines: list[dict] = []
    while not lines and time.monotonic() < deadline:
        lines = [json.loads(line) for line in server.log().splitlines() if "gone-client-1" in line]
        time.sleep(0.1)
    assert [(line["status"], line["reviews"]) for line in lines] == [(499, 0)], lines


def _read_answers(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """``count`` HTTP/1.1 answers (status, lower-case headers, body) read from a kept-alive connection."""
    data, answers = b"", []
    while len(answers) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            lines = data[:head_end].decode("latin-1").split("\r\n")
            headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
            end = head_end + 4 + int(headers["content-length"])
            if len(data) >= end:
                answers.append((int(lines[0].split()[1]), headers, data[head_end + 4 : end]))
                data = data[end:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(answers)} answers"
        data += chunk
    return answers


def test_pipelined_sheds_keep_the_connection_framed(server_factory) -> None:
    # Over budget the worker sheds whole simple POSTs before gunicorn parses them (web/rawshed.py); two POSTs and
    # a GET sent in one write must get two sheds (ids echoed, /v2 shape) and the GET's answer, in order.
    server: Server = server_factory(workers=1, MAX_QUEUE_MS="0.001")
    server.wait_workers(1)
    shed_before = sample(metrics(server), "reviewserve_requests_shed_total")
    body = json.dumps({"review": "fine"}).encode()
    infer = json.dumps({"inputs": [{"name": "review", "shape": [1], "datatype": "BYTES", "data": ["ok"]}]}).encode()
    batch = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Request-ID: raw-1\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        + b"POST /v2/models/review-sentiment/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(infer)}\r\n\r\n".encode() + infer
        + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    )  # fmt: skip
    seen = None
    with ClosedLoop(server.url, MAX_LIST, clients=2):
        time.sleep(1)
        deadline = time.monotonic() + 60
        while seen is None and time.monotonic() < deadline:
            with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
                answers = _among_others(server, sock, batch, 3)[:3]
            if [a[0] for a in answers] == [503, 503, 200]:
                seen = answers
    assert seen is not None, "no connection had both POSTs shed"
    (_, h1, b1), (_, h2, b2), (_, _, b3) = seen
    assert h1["x-request-id"] == "raw-1" and h1["retry-after"] == "1" and h1["connection"] == "keep-alive"
    assert json.loads(b1)["error"]["code"] == "overloaded" and json.loads(b1)["error"]["request_id"] == "raw-1"
    doc = json.loads(b2)
    assert doc["code"] == "overloaded" and doc["request_id"] == h2["x-request-id"] and len(doc["request_id"]) == 32
    assert json.loads(b3)["status"] == "ok"
    assert shed_total(server, shed_before + 2) - shed_before >= 2


def test_bodies_still_arriving_are_not_work_waiting(server_factory) -> None:
    # MAX_QUEUE_MS as shipped (20). In each round 32 requests announce 100 kB bodies and send a few bytes of them
    # and, in the same moment, one small complete request arrives. Counted by its announced length each trickled
    # body is ~0.1 s of work waiting (the admission prior), and the small request was shed behind them; a request
    # joins the line only once its body has arrived, so nothing waits and it is served.
    server: Server = server_factory(workers=1, MAX_QUEUE_MS="20")
    server.wait_workers(1)
    abandoned_before = sample(metrics(server), "reviewserve_requests_abandoned_total")
    body = json.dumps({"review": "fine"}).encode()
    small = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    )  # fmt: skip
    partial = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Request-ID: trickled\r\n"
        b'Content-Length: 100000\r\n\r\n{"review": "'
    )
    statuses, answered_early = [], []
    for _ in range(5):
        slow = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(32)]
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as fast:
            time.sleep(0.3)  # every connection accepted and waiting for its request
            for sock in slow:
                sock.sendall(partial)
            fast.sendall(small)
            statuses.append(_read_answers(fast, 1)[0][0])
        time.sleep(0.3)
        for sock in slow:
            # A request whose body has not arrived gets no answer yet (counted as work, they shed each other).
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                answered_early.append(sock.recv(4096)[:40])
            sock.close()  # the bodies never complete: each is logged 499 and counted abandoned, never scored
    assert statuses == [200] * 5, statuses
    assert answered_early == [], f"{len(answered_early)} incomplete requests answered: {answered_early[:3]}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        gone = sample(metrics(server), "reviewserve_requests_abandoned_total") - abandoned_before
        if gone >= 5 * 32:
            break
        time.sleep(0.1)
    assert gone == 5 * 32
    lines = [json.loads(line) for line in server.log().splitlines() if '"trickled"' in line]
    assert len(lines) == 5 * 32 and {(line["status"], line["reviews"]) for line in lines} == {(499, 0)}, lines[:3]


def test_a_connection_shed_for_longer_than_keepalive_stays_open(server_factory) -> None:
    # The worker sheds a connection's requests inside one wait for its next request (web/rawshed.py). A client
    # sending every ~0.5 s for 2 s, shed each time, is not silent: its connection must outlive KEEPALIVE (1 s), and
    # be closed once it has really been silent for KEEPALIVE.
    server: Server = server_factory(workers=1, MAX_QUEUE_MS="0.001", KEEPALIVE="1")
    server.wait_workers(1)
    with ClosedLoop(server.url, MAX_LIST, clients=2):
        time.sleep(1)
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            answers: list[tuple[float, int]] = []  # (when read, status)
            longest = 0.0  # the longest stretch of sheds in a row, seconds
            deadline = time.monotonic() + 30
            while longest < 2.0 and time.monotonic() < deadline:
                answer, read_at = _among_others(server, sock, SMALL_POST, 1)
                status = answer[0]
                answers.append((read_at, status))
                if status != 503:  # a served request ends the wait; the next starts a new one
                    answers = []
                elif len(answers) > 1:
                    longest = max(longest, answers[-1][0] - answers[0][0])
                time.sleep(0.3)
            assert longest >= 2.0, f"no 2 s of sheds in a row (longest {longest:.1f} s)"
            answered = answers[-1][0]
            sock.settimeout(5)
            assert sock.recv(4096) == b""  # closed by the server once silent for KEEPALIVE
            assert 0.9 < time.monotonic() - answered < 4

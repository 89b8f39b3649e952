"""The worker's admission line (web/admission.py) and the shed answer (web/shedding.py), without a server."""

from __future__ import annotations

import json
import socket

import pytest

from reviewserve.web import shedding
from reviewserve.web.admission import PRIOR_SECONDS, PRIOR_SECONDS_PER_BYTE, AdmissionQueue, size_class
from reviewserve.web.rawshed import parse_sheddable


def test_admits_until_more_than_the_budget_waits() -> None:
    line = AdmissionQueue(max_queue_seconds=0.010)
    line.finished(100, 0.004)  # a 100-byte request is learned to take 4 ms
    assert [line.admit(100) for _ in range(3)] == [0.004, 0.004, 0.004]  # 0, 4, 8 ms waiting: admitted
    assert line.admit(100) is None  # 12 ms waiting > 10 ms: shed
    assert line.waiting == 3 and line.waiting_seconds == pytest.approx(0.012)
    line.start(0.004)  # one leaves the line: 8 ms waiting
    assert line.admit(100) == 0.004


def test_one_request_larger_than_the_budget_is_admitted_when_nothing_waits() -> None:
    line = AdmissionQueue(max_queue_seconds=0.020)
    line.finished(320_000, 0.25)
    assert line.admit(320_000) == 0.25
    assert line.admit(90) is None  # everything sheds until the large one has started
    line.start(0.25)
    assert line.waiting == 0 and line.waiting_seconds == 0.0
    assert line.admit(90) is not None


def test_estimates_are_learned_per_size_class_with_a_prior() -> None:
    line = AdmissionQueue(max_queue_seconds=1.0)
    assert line.estimate(1000) == pytest.approx(PRIOR_SECONDS + PRIOR_SECONDS_PER_BYTE * 1000)
    line.finished(1000, 0.010)
    assert line.estimate(1000) == 0.010
    assert line.estimate(1023) == 0.010  # same power of two
    assert line.estimate(2048) == pytest.approx(PRIOR_SECONDS + PRIOR_SECONDS_PER_BYTE * 2048)  # not learned yet
    line.finished(1000, 0.020)
    assert 0.010 < line.estimate(1000) < 0.020  # smoothed, not the last sample
    before = line.estimate(1000)
    line.finished(1000, 10.0)  # an outlier (it waited for its body while others were served)
    assert line.estimate(1000) == pytest.approx(before + 0.2 * (4 * before - before))  # capped at 4x
    assert size_class(0) == 0 and size_class(1) == 1 and size_class(1 << 40) == 41


def test_overloaded_response_is_the_error_shape_with_retry_after() -> None:
    raw = shedding.overloaded_response("/predict", "rid-1", retry_after=3, close=False)
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 503 Service Unavailable"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Retry-After"] == "3" and headers["X-Request-ID"] == "rid-1"
    assert headers["Content-Type"] == "application/json" and int(headers["Content-Length"]) == len(body)
    assert headers["Connection"] == "keep-alive"
    error = json.loads(body)["error"]
    assert error["code"] == "overloaded" and error["request_id"] == "rid-1" and error["message"]
    v2 = shedding.overloaded_response("/v2/models/review-sentiment/infer", "rid-2", retry_after=1, close=True)
    head, body = v2.split(b"\r\n\r\n", 1)
    assert b"Connection: close" in head
    doc = json.loads(body)
    assert doc["code"] == "overloaded" and isinstance(doc["error"], str) and doc["request_id"] == "rid-2"


def test_client_gone_tells_a_closed_peer_from_a_waiting_one() -> None:
    server, client = socket.socketpair()
    with server, client:
        client.sendall(b"POST /predict HTTP/1.1\r\n\r\n")  # a request waiting to be read: not gone
        assert not shedding.client_gone(server)
        client.close()
        assert shedding.client_gone(server)  # closed, even with its request still unread


def test_parse_sheddable_takes_only_a_whole_simple_post() -> None:
    body = b'{"review": "fine"}'
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    request = head + b"X-Request-ID: rid-9\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    assert parse_sheddable(request) == (len(request), "/predict", "rid-9")
    nxt = b"GET /healthz HTTP/1.1\r\n\r\n"
    assert parse_sheddable(request + nxt) == (len(request), "/predict", "rid-9")  # pipelined: framed by length
    plain = head + b"Connection: keep-alive\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    assert parse_sheddable(plain) == (len(plain), "/predict", None)
    v2 = b"POST /v2/models/m/infer?x=1 HTTP/1.1\r\nContent-Length: 2\r\nX-Request-ID: bad id\r\n\r\n{}"
    assert parse_sheddable(v2) == (len(v2), "/v2/models/m/infer", None)  # an invalid id is replaced
    refused = [
        request[:-1],  # the body is not all there
        request.split(b"\r\n\r\n")[0],  # nor the headers
        b"GET /predict HTTP/1.1\r\n\r\n",
        request.replace(b"HTTP/1.1", b"HTTP/1.0"),
        head + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        head + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
        head + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
        head + b"Connection: close\r\nContent-Length: 2\r\n\r\n{}",
        head + b"Content-Length: 2\r\n folded\r\n\r\n{}",
        head + b"Content-Length : 2\r\n\r\n{}",
        head + b"Content-Length: -2\r\n\r\n{}",
        head + b"\r\n{}",  # no Content-Length
    ]
    for data in refused:
        assert parse_sheddable(data) is None, data

"""The parser that sheds in the event loop (web/rawshed.py), on a real TCP connection and gevent's real loop.

The worker is replaced by a shedder that is always over budget and answers with its own bytes: what is under
test is the parser's framing (pipelined requests shed in order, the next request handed to gunicorn) and the
answer the socket did not take at once, which the connection's greenlet must finish sending.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import gevent
import gevent.socket
from gunicorn.config import Config

from reviewserve.web.rawshed import ShedFirstParser
from reviewserve.web.worker import _send_now

COUNT = 300
ANSWER_PAD = b"x" * 2000  # large answers, so that the client's small window fills and a send is partial


class _AlwaysOver:
    """Every POST arriving is shed; each answer carries its request id."""

    def __init__(self) -> None:
        self.shed: list[str | None] = []
        self.partial = 0  # answers the socket did not take whole
        self.greenlets: set[Any] = set()

    def over_budget(self) -> bool:
        return True

    def shed_raw(self, sock: Any, path: str, rid: str | None, greenlet: Any) -> bytes:
        self.shed.append(rid)
        self.greenlets.add(greenlet)
        unsent = _send_now(sock, _answer(path, rid))
        self.partial += bool(unsent)
        return unsent


def _answer(path: str, rid: str | None) -> bytes:
    body = f"{path} {rid} ".encode() + ANSWER_PAD
    return b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def _serve(parser: ShedFirstParser, sock: Any) -> tuple[Any, list[str | None]]:
    """What the worker does with the requests the parser returns, up to the first GET: POSTs shed from gunicorn's
    parse (one cut off at the end of a read reaches gunicorn's parser); the GET and those POSTs' ids returned."""
    parsed = []
    for request in parser:
        if request.method == "GET":
            return request, parsed
        rid = dict(request.headers)["X-REQUEST-ID"]
        parsed.append(rid)
        sock.sendall(_answer(request.path, rid))
    raise AssertionError("the connection ended before the GET")


def _post(i: int) -> bytes:
    return (
        f"POST /predict HTTP/1.1\r\nHost: x\r\nX-Request-ID: req-{i}\r\nContent-Length: 2\r\n\r\n{{}}".encode()
    )  # fmt: skip


def _read_all(sock: socket.socket, received: list[bytes]) -> None:
    """Read slowly until the server closes: the server's sends find the client's window full."""
    while True:
        time.sleep(0.001)
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return
        if not chunk:
            return
        received.append(chunk)


def test_pipelined_sheds_with_partial_sends_stay_framed_and_in_order() -> None:
    listener = gevent.socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    client.connect(listener.getsockname())
    conn, addr = listener.accept()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # and a small send buffer: sends fill it
    shedder = _AlwaysOver()
    received: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(client, received), daemon=True)
    reader.start()
    # 300 pipelined POSTs and a GET, written by another thread while the loop runs the parser.
    writer = threading.Thread(
        target=client.sendall, args=(b"".join(_post(i) for i in range(COUNT)) + b"GET /healthz HTTP/1.1\r\n\r\n",)
    )
    writer.start()
    parser = ShedFirstParser(Config(), conn, addr, shedder)
    serving = gevent.spawn(_serve, parser, conn)
    request, parsed = serving.get(timeout=30)
    writer.join(timeout=30)
    conn.close()
    reader.join(timeout=30)
    client.close()
    listener.close()

    assert (request.method, request.path) == ("GET", "/healthz")
    assert len(parsed) < COUNT / 10, parsed  # most were shed raw (a read of 8 kB holds ~80 of them)
    assert sorted(shedder.shed + parsed, key=lambda rid: int(rid[4:])) == [f"req-{i}" for i in range(COUNT)]
    assert shedder.greenlets == {serving}  # answered for this connection's greenlet, wherever the shed ran
    assert shedder.partial > 0, "no send was partial: the test did not exercise the rest being sent later"
    data = b"".join(received)
    ids = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(head.split(b"Content-Length: ")[1])
        ids.append(rest[:length].split(b" ")[1].decode())
        assert rest[length - len(ANSWER_PAD) : length] == ANSWER_PAD
        data = rest[length:]
    assert ids == [f"req-{i}" for i in range(COUNT)]  # every answer whole, in request order

"""Shedding without gunicorn's request parser: the cheap path for the common shed request.

A shed must cost a few percent of a served request, or under a large overload the sheds eat the capacity
(docs/benchmarking.md, "What a shed costs"). Profiled, gunicorn's Python parser (request line, headers, the
Request object, its forwarded-header policy) was the largest part of a shed. :class:`ShedFirstParser`
therefore receives each request's first bytes itself and, if the worker is over its budget when they arrive,
looks at them before gunicorn does: a complete ``POST <path> HTTP/1.1`` with one ``Content-Length`` and its
whole body already received is answered 503 at once and skipped. Anything else (another method, HTTP/1.0,
chunked, ``Expect``, a ``Connection`` other than keep-alive, a body still arriving, an odd header line), and
every request while the worker has room, goes to gunicorn's parser as before, and is shed or served there.
Framing is by the one ``Content-Length``, as gunicorn frames it.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from gunicorn.http.parser import RequestParser

from reviewserve.web.requestlog import valid_request_id

_END = b"\r\n\r\n"
_MAX_HEAD = 8190  # gunicorn's limit_request_line default: a longer head is left to its checks
_FALLBACK_HEADERS = frozenset((b"transfer-encoding", b"expect", b"upgrade"))


class Shedder(Protocol):
    """What the parser asks the worker (implemented by ``ReviewserveWorker``)."""

    def over_budget(self) -> bool:
        """Whether a POST arriving now would be shed."""

    def shed_raw(self, sock: Any, path: str, rid: str | None) -> None:
        """Send the 503 answer (keep-alive) and count the shed."""


def parse_sheddable(data: bytes) -> tuple[int, str, str | None] | None:
    """``(end of the request, path, X-Request-ID or None)`` when ``data`` starts with a whole simple POST."""
    if not data.startswith(b"POST "):
        return None
    head_end = data.find(_END, 0, _MAX_HEAD)
    if head_end < 0:
        return None
    lines = data[:head_end].split(b"\r\n")
    target, _, version = lines[0][5:].partition(b" ")
    if version != b"HTTP/1.1" or not target.startswith(b"/") or b" " in target:
        return None
    length = -1
    rid = None
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or b" " in name or b"\t" in name:
            return None  # obsolete folding, a malformed line: gunicorn's parser decides
        name = name.lower()
        if name == b"content-length":
            value = value.strip()
            if length >= 0 or not value.isdigit():
                return None
            length = int(value)
        elif name == b"x-request-id":
            candidate = value.strip().decode("latin-1")
            rid = candidate if valid_request_id(candidate) else None
        elif name == b"connection":
            if value.strip().lower() != b"keep-alive":  # close (or anything else): gunicorn's parser handles it
                return None
        elif name in _FALLBACK_HEADERS:
            return None
    end = head_end + len(_END) + length
    if length < 0 or len(data) < end:
        return None
    path = target.split(b"?", 1)[0].decode("latin-1")
    return end, path, rid


class ShedFirstParser(RequestParser):
    """gunicorn's request parser, which sheds complete simple POSTs itself while the worker is over budget.

    It waits for the next request's first bytes itself, before gunicorn's parser sees them: whether the worker
    is over budget is decided once they are there. A connection that began waiting while the line had room
    would otherwise be parsed in full and shed from gunicorn's Request, at about twice the CPU (measured: 39%
    of the sheds at 2x took that path when the check came before the wait).
    """

    def __init__(self, cfg: Any, source: Any, source_addr: Any, shedder: Shedder) -> None:
        super().__init__(cfg, source, source_addr)
        self.shedder = shedder
        self.sock = source

    def __next__(self) -> Any:
        if self.mesg is not None:  # the previous request: as gunicorn's parser ends it
            if self.mesg.should_close():
                raise StopIteration()
            if not self.finish_body():
                raise StopIteration()
            self.mesg = None
        shedder, unreader = self.shedder, self.unreader
        while True:
            data = unreader.read() if unreader.buf.seek(0, os.SEEK_END) else self._receive()  # seek: size held
            if not data:
                break  # the client is gone: gunicorn's parser tells it as before
            parsed = parse_sheddable(data) if shedder.over_budget() else None
            if parsed is None:
                unreader.unread(data)
                break
            end, path, rid = parsed
            if end < len(data):
                unreader.unread(data[end:])  # the next (pipelined) request
            shedder.shed_raw(self.sock, path, rid)
        return super().__next__()

    next = __next__

    def _receive(self) -> bytes:
        """The next bytes from the client, waiting for them first.

        Between requests the next one is not there yet (its client is still reading the last answer), so this
        waits for the socket to turn readable and then reads once, instead of a read that fails, a wait and a
        second read. The wait needs no timer of its own: it runs inside gunicorn's keep-alive wait for the
        next request (the worker's ``timeout_ctx``), which ends a silent connection.
        """
        sock = self.sock
        watcher = getattr(sock, "_read_event", None)
        if watcher is None or hasattr(sock, "pending"):  # closed, or TLS (bytes may wait in the SSL object)
            return self.unreader.read()
        sock.hub.wait(watcher)  # gevent's own wait in ``sock.recv``, without the Timeout it makes per call
        return sock.recv(self.unreader.mxchunk)

"""Shedding without gunicorn's request parser: the cheap path for the common shed request.

A shed must cost a few percent of a served request, or under a large overload the sheds eat the capacity
(docs/benchmarking.md, "What a shed costs"). Profiled, gunicorn's Python parser (request line, headers, the
Request object, its forwarded-header policy) was the largest part of a shed. :class:`ShedFirstParser`
therefore receives each request's first bytes itself, in the event loop's callback for a readable socket (no
greenlet switch for a shed), and, if the worker is over its budget when they arrive, looks at them before
gunicorn does: a complete ``POST <path> HTTP/1.1`` with one ``Content-Length`` and its
whole body already received is answered 503 at once and skipped. Anything else (another method, HTTP/1.0,
chunked, ``Expect``, a ``Connection`` other than keep-alive, a body still arriving, an odd header line), and
every request while the worker has room, goes to gunicorn's parser as before, and is shed or served there.
Framing is by the one ``Content-Length``, as gunicorn frames it.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Protocol

from gevent import getcurrent
from gevent.hub import Waiter
from gunicorn.http.parser import RequestParser

from reviewserve.web.requestlog import valid_request_id

_END = b"\r\n\r\n"
_MAX_HEAD = 8190  # gunicorn's limit_request_line default: a longer head is left to its checks
# The request line and header lines of a simple POST: a target without spaces (group 1: its path), HTTP/1.1, and
# lines of a name without whitespace, a colon and a value (no obsolete folding).
_HEAD = re.compile(rb"POST (/[^ \r\n?]*)(?:\?[^ \r\n]*)? HTTP/1\.1(?:\r\n[^\s:]+:[^\r\n]*)*")
# The header lines that decide framing or the answer; any other header is ignored.
_NOTABLE = re.compile(
    rb"\r\n(content-length|x-request-id|connection|transfer-encoding|expect|upgrade):([^\r\n]*)", re.IGNORECASE
)


class Shedder(Protocol):
    """What the parser asks the worker (implemented by ``ReviewserveWorker``)."""

    def over_budget(self) -> bool:
        """Whether a POST arriving now would be shed."""

    def shed_raw(self, sock: Any, path: str, rid: str | None, greenlet: Any) -> bytes:
        """Send what the socket takes at once of the 503 answer (keep-alive), count the shed; return the rest.

        Called in the event loop, for the connection served by ``greenlet``: it must not block.
        """


def parse_sheddable(data: bytes) -> tuple[int, str, str | None] | None:
    """``(end of the request, path, X-Request-ID or None)`` when ``data`` starts with a whole simple POST.

    Two regular expressions, not a loop over the header lines: this runs for every shed request (measured: 3.7 µs
    for a loop with ``partition``/``strip``/``lower`` per line, 1.6 µs this way).
    """
    if not data.startswith(b"POST "):
        return None
    head_end = data.find(_END, 0, _MAX_HEAD)
    if head_end < 0:
        return None
    head = _HEAD.fullmatch(data, 0, head_end)
    if head is None:
        return None  # HTTP/1.0, a target with spaces, obsolete folding, a malformed line: gunicorn's parser decides
    length = -1
    rid = None
    for name, value in _NOTABLE.findall(data, head.end(1), head_end):
        name = name.lower()
        if name == b"content-length":
            value = value.strip()
            if length >= 0 or not value.isdigit():
                return None
            length = int(value)
        elif name == b"x-request-id":
            candidate = value.strip().decode("latin-1")
            rid = candidate if valid_request_id(candidate) else None
        elif name != b"connection" or value.strip().lower() != b"keep-alive":
            return None  # Transfer-Encoding, Expect, Upgrade, Connection: close: gunicorn's parser handles them
    end = head_end + len(_END) + length
    if length < 0 or len(data) < end:
        return None
    return end, head.group(1).decode("latin-1"), rid


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
        self._waiter: Any = None  # while waiting for the next request: what wakes this greenlet
        self._greenlet: Any = None  # the greenlet serving this connection

    def __next__(self) -> Any:
        if self.mesg is not None:  # the previous request: as gunicorn's parser ends it
            if self.mesg.should_close():
                raise StopIteration()
            if not self.finish_body():
                raise StopIteration()
            self.mesg = None
        unreader = self.unreader
        while True:
            if unreader.buf.seek(0, os.SEEK_END):  # bytes held (pipelined after the last request): seek gives the size
                data, unsent = self._shed_from(unreader.read(), getcurrent())
            else:
                data, unsent = self._receive()
            if unsent:  # a shed answer the socket's buffer did not take at once
                self.sock.sendall(unsent)
                if data:
                    unreader.unread(data)  # the requests after it: looked at in the next turn
                    continue
            if data is not None:
                break
        if data:
            unreader.unread(data)  # for gunicorn's parser; none: the client is gone, and its parser tells it as before
        return super().__next__()

    next = __next__

    def _shed_from(self, data: bytes, greenlet: Any) -> tuple[bytes | None, bytes]:
        """Shed the whole simple POSTs at the start of ``data`` while the worker is over budget.

        Returns what is left (``None``: nothing, all shed; ``b""``: the client closed) and the part of the last
        shed answer the socket did not take at once (it stops there: the rest must be sent first). Never blocks.
        """
        shedder = self.shedder
        while data and shedder.over_budget():
            parsed = parse_sheddable(data)
            if parsed is None:
                break
            end, path, rid = parsed
            unsent = shedder.shed_raw(self.sock, path, rid, greenlet)
            data = data[end:]
            if unsent or not data:
                return data or None, unsent
        return data, b""

    def _receive(self) -> tuple[bytes | None, bytes]:
        """The next bytes from the client, waiting for them first, with what :meth:`_shed_from` left of them.

        Between requests the next one is not there yet (its client is still reading the last answer), so this
        waits for the socket to turn readable. What arrives is read and looked at in the event loop's readiness
        callback (:meth:`_readable`): a request shed there costs no switch into this greenlet and back
        (measured, every POST shed at 4,000/s on one worker: 33-34 -> 27-28 µs of CPU per shed). The wait
        needs no timer of its own: it runs inside gunicorn's keep-alive wait for the next request (the
        worker's ``timeout_ctx``), which ends a silent connection.
        """
        sock = self.sock
        watcher = getattr(sock, "_read_event", None)
        if watcher is None or hasattr(sock, "pending"):  # closed, or TLS (bytes may wait in the SSL object)
            return self._shed_from(self.unreader.read(), getcurrent())
        self._waiter = Waiter(sock.hub)
        self._greenlet = getcurrent()
        watcher.start(self._readable)
        try:
            return self._waiter.get()
        finally:
            watcher.stop()

    def _readable(self) -> None:
        """The socket is readable (in the event loop): shed what arrived; wake the connection for anything else.

        A request shed whole keeps the wait going; anything left, an answer not all sent, or an error (raised in
        the connection's greenlet) wakes it.
        """
        waiter = self._waiter
        try:
            try:
                data = self.sock._sock.recv(self.unreader.mxchunk)
            except (BlockingIOError, InterruptedError):
                return  # nothing after all: keep waiting
            left, unsent = self._shed_from(data, self._greenlet)
            if left is not None or unsent:
                waiter.switch((left, unsent))
        except BaseException:
            waiter.throw(*sys.exc_info())

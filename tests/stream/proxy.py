"""A tiny TCP proxy in front of Redis that loses one reply: the request reaches Redis and runs, the
client sees its connection drop instead of the answer (as when a network path breaks at that moment).

Redis answers the commands of one connection in order, so the reply that follows a request holding
``marker`` is that request's reply. An error reply (``-NOSCRIPT`` ...) is passed through: only a
reply to a command that really ran is lost.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.conftest import free_port


class LosingProxy:
    """Forward 127.0.0.1:port to ``upstream_port``; drop the connection instead of the first marked reply."""

    def __init__(self, upstream_port: int, marker: bytes) -> None:
        self.upstream_port = upstream_port
        self.marker = marker
        self.port = free_port()
        self.dropped = 0
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            armed = threading.Event()
            threading.Thread(target=self._requests, args=(client, upstream, armed), daemon=True).start()
            threading.Thread(target=self._replies, args=(upstream, client, armed), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, armed: threading.Event) -> None:
        tail = b""
        try:
            while data := client.recv(65536):
                if self.marker in tail + data:
                    armed.set()  # before forwarding: the reply cannot come earlier
                tail = data[-len(self.marker) :]
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _close(client, upstream)

    def _replies(self, upstream: socket.socket, client: socket.socket, armed: threading.Event) -> None:
        try:
            while data := upstream.recv(65536):
                if armed.is_set():
                    armed.clear()
                    with self._lock:
                        lose = self.dropped == 0 and not data.startswith(b"-")
                        self.dropped += lose
                    if lose:
                        return  # the command ran in Redis; its reply never reaches the client
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client, upstream)

    def close(self) -> None:
        self._listener.close()


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

"""A free TCP port for a server about to be started (benchmarks and tests)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port free on every address right now.

    Picked on the wildcard address, as the servers bind it: a port free on 127.0.0.1 alone can be the local port
    of a connection from another address of this machine (seen: "Address already in use" for 5 s).
    """
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]

"""A free TCP port on the loopback address, for the servers benches and tests start (stdlib only: making a
database or a Ray node never imports MLflow)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick); a server started on it soon after gets it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

"""Loopback ports for tests and benchmarks."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_ports(n: int) -> int:
    """The first of ``n`` consecutive free TCP ports on loopback (as ``ashao up --cores/--facades N`` uses
    them)."""
    for _ in range(100):
        first = free_port()
        if first + n > 65536:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(first + 1, first + n):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return first
    raise RuntimeError(f"no {n} consecutive free ports on loopback")

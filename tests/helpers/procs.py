"""Faults done to the processes of a ``LocalNetwork``: kill, restart, pause and resume them."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator

from ashao_cli.devnet import LocalNetwork


def child(net: LocalNetwork, name: str) -> subprocess.Popen[bytes]:
    """The running child called ``name`` ("core", "facade", "worker w1")."""
    for n, proc in net.children:
        if n == name and proc.poll() is None:
            return proc
    raise LookupError(f"no running {name}")


def kill(net: LocalNetwork, name: str) -> None:
    """SIGKILL ``name`` and forget it (it leaves what it was doing as a crash would)."""
    proc = child(net, name)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    net.children.remove((name, proc))


def restart(net: LocalNetwork, name: str) -> subprocess.Popen[bytes]:
    """Start the core or the facade again on the same address and data (waits until it listens)."""
    if name == "core":
        return net.start_core()
    if name == "facade":
        return net.start_facade()
    raise ValueError(name)


@contextlib.contextmanager
def stopped(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """``proc`` is stopped (SIGSTOP) for the block, and continued (SIGCONT) after it, whatever happens."""
    proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)

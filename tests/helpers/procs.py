"""Processes under test: ``ashao up`` started as a user starts it, and faults done to the processes of a
``LocalNetwork`` (kill, restart, pause and resume them)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from ashao_cli.devnet import LocalNetwork
from tests.helpers.net import free_ports


@contextlib.contextmanager
def ashao_up(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, ports: int = 1
) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """``ashao up ARGS`` (with ``env`` added to this environment) on free loopback ports with its data under
    ``tmp_path``: yields the process (its output captured as text) and its HTTP and gRPC addresses (of the
    first facade and core; with ``ports`` > 1, that many consecutive ports are free from each, for more
    cores and facades); killed after the block if still running."""
    http_addr, grpc_addr = f"127.0.0.1:{free_ports(ports)}", f"127.0.0.1:{free_ports(ports)}"
    env = dict(
        os.environ,
        **(env or {}),
        ASHAO_HTTP_ADDR=http_addr,
        ASHAO_GRPC_ADDR=grpc_addr,
        ASHAO_DATA_DIR=str(tmp_path / "d"),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "ashao_cli", "up", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc, http_addr, grpc_addr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


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

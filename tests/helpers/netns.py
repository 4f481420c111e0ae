"""A network namespace joined to this one by a veth pair, for partition tests (root only, or a skip).

The pair gets a /30 of 10.250.0.0/16 that no interface of this machine uses: ``host_ip`` on this side,
``ns_ip`` inside the namespace. Nothing else of the machine changes (no route, no address of another
interface); the namespace and both ends of the pair are removed on exit, whatever happened.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True, slots=True)
class Namespace:
    """The namespace and the pair's two ends."""

    name: str
    host_if: str
    host_ip: str
    ns_ip: str

    def command(self, *args: str) -> list[str]:
        """``args`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *args]

    def cut(self) -> None:
        """Take the link down: nothing passes between the namespace and this side."""
        _ip("link", "set", self.host_if, "down")

    def heal(self) -> None:
        """Bring the link up again."""
        _ip("link", "set", self.host_if, "up")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _free_subnet() -> ipaddress.IPv4Network:
    out = subprocess.run(
        ["ip", "-o", "-4", "addr", "show"], check=True, capture_output=True, text=True, timeout=10
    ).stdout
    used = [ipaddress.ip_interface(word) for line in out.splitlines() for word in line.split() if "/" in word]
    for _ in range(100):
        net = ipaddress.ip_network(f"10.250.{secrets.randbelow(256)}.{4 * secrets.randbelow(64)}/30")
        if not any(i.network.overlaps(net) for i in used if isinstance(i, ipaddress.IPv4Interface)):
            return net
    pytest.skip("no free /30 in 10.250.0.0/16 for a test namespace")


@contextlib.contextmanager
def namespace() -> Iterator[Namespace]:
    """A fresh namespace with the link up, removed on exit; skips without root, ``ip`` or netns."""
    if os.geteuid() != 0:
        pytest.skip("a partition test needs root (network namespaces and a veth pair)")
    if shutil.which("ip") is None:
        pytest.skip("a partition test needs iproute2's ip")
    tag = secrets.token_hex(3)
    ns = f"ashao-{tag}"
    host_if, ns_if = f"ash{tag}h", f"ash{tag}n"
    try:
        _ip("netns", "add", ns)
    except (subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"network namespaces are not available here ({exc})")
    try:
        subnet = _free_subnet()
        host_ip, ns_ip = (str(a) for a in subnet.hosts())
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", ns, "addr", "add", f"{ns_ip}/30", "dev", ns_if)
        _ip("-n", ns, "link", "set", ns_if, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        yield Namespace(ns, host_if, host_ip, ns_ip)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            _ip("netns", "del", ns)  # (takes the namespace's end of the pair, and so the pair, with it)
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            _ip("link", "del", host_if)

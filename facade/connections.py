"""Connection-level bounds of the facade's HTTP server, which uvicorn does not have.

uvicorn bounds an idle keep-alive connection (``timeout_keep_alive``), but not a connection that never
finishes its request headers (slowloris), nor how large those headers may grow, nor how many
connections one address may hold. ``guarded_protocol`` builds uvicorn's httptools protocol with those
bounds (and with TCP_NODELAY whatever the event loop); the per-request cost is a timer armed and
disarmed around each request head and a flag test per read.

It also bounds what a refused body may cost: a response sent before the request body was read (the
body limit's 413) leaves uvicorn reading and dropping the rest of the body, so the client, still
sending, can read the answer (closing at once would reset the connection under it); that reading
lasts ``DISCARD_S`` at most, then the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Callable
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from facade.config import FacadeSettings

HTTP_CYCLE = "ashao.http_cycle"
"""The scope extension holding uvicorn's request/response cycle (``{"cycle": …}``): an SSE response writes its frames
to the socket beneath it (``facade.sse.SocketSink``) instead of through every ASGI layer."""

DISCARD_S = 10.0
"""How long the rest of a refused request body is read and dropped before the connection is closed."""


def _head_too_large(limit: int) -> bytes:
    body = orjson.dumps({"error": f"request headers too large (the limit is {limit} bytes)"})
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%b" % (len(body), body)
    )


def _no_delay(transport: asyncio.Transport) -> None:
    """Send each write at once (TCP_NODELAY). uvloop sets it on every connection; asyncio's loop only on
    sockets made with an explicit TCP protocol number, which a socket from ``socket.socket()`` (uvicorn's
    own, or one handed to it) is not: a response's head and body, written apart, then wait on the
    client's delayed ACK, ~40 ms per response on a kept-alive connection."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def trusted_proxies(settings: FacadeSettings) -> Callable[[str], bool]:
    """Whether a peer address is a trusted proxy (``trust_forwarded`` and in ``forwarded_allow_ips``):
    it speaks for many clients, so the per-address cap does not apply to it."""
    if not settings.trust_forwarded:
        return lambda ip: False
    items = {i.strip() for i in settings.forwarded_allow_ips.split(",") if i.strip()}
    if "*" in items:
        return lambda ip: True
    networks = []
    for item in items:
        with contextlib.suppress(ValueError):
            networks.append(ipaddress.ip_network(item, strict=False))

    def trusted(ip: str) -> bool:
        if ip in items:
            return True
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in networks)

    return trusted


def guarded_protocol(settings: FacadeSettings) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol bounded by ``settings``: ``header_timeout_s``, ``max_header_bytes``,
    ``max_connections_per_ip`` and ``keep_alive_s``. Each call makes a class with its own count of
    connections per address (one per server)."""
    header_timeout_s = settings.header_timeout_s
    max_head = settings.max_header_bytes
    per_ip = settings.max_connections_per_ip
    keep_alive_s = settings.keep_alive_s
    head_too_large = _head_too_large(max_head)
    open_by_ip: dict[str, int] = {}
    is_proxy = trusted_proxies(settings)

    class GuardedProtocol(HttpToolsProtocol):
        """One HTTP connection, closed when its request head is late or too large, or when its address
        (unless a trusted proxy's) already holds ``max_connections_per_ip`` connections."""

        by_ip: ClassVar[dict[str, int]] = open_by_ip
        """Connections open now, by peer address (of this server; while the cap is on)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.timeout_keep_alive = keep_alive_s  # type: ignore[assignment]  # (uvicorn takes whole seconds)
            self._ip: str | None = None
            self._head_timer: asyncio.TimerHandle | None = None
            self._in_head = True
            self._head_bytes = 0
            self._discard_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            """Count the connection against its address (closing it past the cap); start the clock of
            its first request head."""
            super().connection_made(transport)
            _no_delay(transport)
            ip = self.client[0] if self.client else ""
            if per_ip and not is_proxy(ip):
                count = open_by_ip.get(ip, 0) + 1
                open_by_ip[ip] = count
                self._ip = ip
                if count > per_ip:
                    transport.close()
                    return
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_late)

        def connection_lost(self, exc: Exception | None) -> None:
            """Stop the clocks and uncount the connection."""
            for timer in (self._head_timer, self._discard_timer):
                if timer is not None:
                    timer.cancel()
            self._head_timer = self._discard_timer = None
            ip, self._ip = self._ip, None
            if ip is not None:
                left = open_by_ip.get(ip, 1) - 1
                if left > 0:
                    open_by_ip[ip] = left
                else:
                    open_by_ip.pop(ip, None)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            """Parse ``data``; a request head past ``max_header_bytes`` is answered 431 and the
            connection closed."""
            if self._in_head:
                self._head_bytes += len(data)
                if self._head_bytes > max_head:
                    super().data_received(data)  # the head may end within this read
                    if self._in_head and not self.transport.is_closing():
                        self.transport.write(head_too_large)
                        self.transport.close()
                    return
            super().data_received(data)

        def on_message_begin(self) -> None:
            """A request starts: the clock of its head runs (the first one's from the connection)."""
            super().on_message_begin()
            self._in_head = True
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(header_timeout_s, self._head_late)

        def on_headers_complete(self) -> None:
            """The head is in: stop its clock and hand the request on (its response may write to the
            socket directly: ``HTTP_CYCLE``)."""
            self._in_head = False
            self._head_bytes = 0
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().on_headers_complete()
            cycle = self.cycle
            if cycle is not None and cycle.scope is self.scope:
                self.scope.setdefault("extensions", {})[HTTP_CYCLE] = {"cycle": cycle}

        def on_message_complete(self) -> None:
            """The request body is in (and, after a refusal, dropped): the connection may go on."""
            super().on_message_complete()
            if self._discard_timer is not None:
                self._discard_timer.cancel()
                self._discard_timer = None

        def on_response_complete(self) -> None:
            """After a response sent before its request body was read, drop the rest of the body for
            ``DISCARD_S`` at most."""
            super().on_response_complete()
            cycle = self.cycle
            if cycle is not None and cycle.more_body and not self.transport.is_closing():
                self._discard_timer = self.loop.call_later(DISCARD_S, self._close)

        def _head_late(self) -> None:
            self._head_timer = None
            if self._in_head:
                self._close()

        def _close(self) -> None:
            self._discard_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return GuardedProtocol

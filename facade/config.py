"""Settings of the HTTP facade: flags over the environment (prefix ``ASHAO_``) over defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ashao_common.settings import Flag


def split_addr(addr: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) → (host, port); ValueError if malformed."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"not host:port: {addr!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class FacadeSettings(BaseSettings):
    """Everything the facade reads from its environment; built once in ``main()`` and passed down."""

    model_config = SettingsConfigDict(env_prefix="ASHAO_", extra="ignore", use_attribute_docstrings=True)

    http_addr: str = "127.0.0.1:8080"
    """Address the HTTP server listens on (``host:port``, ``[::1]:port`` for IPv6)."""
    grpc_addr: Annotated[str, Flag("--core")] = "127.0.0.1:50051"
    """Address of the core's gRPC server (``host:port``), or several cores' (``host:port,host:port``):
    the facade uses the first that answers and moves to the next when it goes away."""
    core_tls: bool = False
    """Reach the core over TLS (verified against the system's roots, or ``core_tls_ca_file``)."""
    core_tls_ca_file: Path | None = None
    """PEM roots to verify the core's certificate with (implies ``core_tls``)."""
    call_timeout_s: float = 15.0
    """Deadline of every unary call to the core."""
    image_timeout_s: float = 150.0
    """Deadline of an image generation call (the core waits for a worker's picture)."""
    relay_timeout_s: float = 300.0
    """Deadline of a relay chat (synchronous, or the whole stream)."""
    cors_origins: str = ""
    """Comma-separated origins allowed to call the API from a browser (CORS); empty allows none."""
    trust_forwarded: bool = False
    """Take the client IP from ``X-Forwarded-For`` and the scheme from ``X-Forwarded-Proto`` (behind a
    trusted proxy only), when the connection comes from one of ``forwarded_allow_ips``."""
    forwarded_allow_ips: str = "127.0.0.1,::1"
    """The trusted proxies (comma-separated addresses or networks, ``*`` for any) whose forwarded
    headers ``trust_forwarded`` believes; the client is the right-most X-Forwarded-For hop not among
    them."""
    session_cookie: str = "ashao_session"
    """Name of the HttpOnly session cookie set after wallet sign-in."""
    sse_keepalive_s: float = 15.0
    """An SSE stream with nothing to say for this long gets a ``: keep-alive`` comment."""
    gc_log: str = ""
    """A file to append one line per garbage collection to (``<unix ns> <generation> <pause µs>``);
    off when empty. Pauses are on ``/metrics`` either way."""
    sse_coalesce_s: float = 0.03
    """Under load, a relay stream's events are written together at most about once per this window
    (its first event after a quiet spell, and the last one, go at once). The network API's streams
    are written once per message from the core, which paces them (``subscribe_pace_max_ms``)."""
    sse_prime_s: float = Field(2.0, ge=0)
    """After answering a send, follow its job this long for the stream its sender opens next (which
    then starts with the watch accepted and the first tokens here, a round trip to the core sooner);
    0: off."""
    sse_max_buffer_bytes: int = 1 << 20
    """A client this far behind (bytes not yet written to it) is cut off with an error event."""
    sse_send_timeout_s: float = 30.0
    """A client that does not read for this long is disconnected."""
    completion_timeout_s: float = Field(600.0, gt=0)
    """Longest a whole (not streamed) ``/v1/chat/completions`` answer is waited for; past it the request
    is answered 504 naming the job, which goes on (its stream can still be followed)."""
    graceful_shutdown_s: float = 3.0
    """How long a stopping facade lets requests finish."""
    core_connect_wait_s: float = 3.0
    """While the facade's streams to the core are down, how long a send or a stream open waits for
    them to come back before answering 503 (rather than the whole ``call_timeout_s``)."""
    max_body_bytes: int = Field(1 << 20, ge=1)
    """Largest request body accepted on any route (1 MiB by default): a larger declared
    ``Content-Length`` is answered 413 before a byte of the body is read, and a chunked body is
    counted as it arrives and refused with 413 once it passes the limit (never buffered whole)."""
    max_content_chars: int = Field(32_000, ge=1)
    """Longest chat message (``content``) relayed to the core: a longer one is answered 400 naming
    ``content`` without reaching the core (keep it at the core's ``max_content_chars``)."""
    max_header_bytes: int = Field(64 * 1024, ge=1024)
    """Largest request head (request line and headers) a connection may send; past it the request is
    answered 431 and the connection closed."""
    header_timeout_s: float = Field(10.0, gt=0)
    """A connection that has not finished sending a request's headers this long after it opened (or
    after the first byte of its next request) is closed (slowloris)."""
    keep_alive_s: float = Field(30.0, gt=0)
    """An idle keep-alive connection (no request in progress) is closed after this long."""
    max_connections_per_ip: int = Field(256, ge=0)
    """Most connections open at once from one peer address; a further one is closed as soon as it is
    accepted (0: no cap). Trusted proxies (``trust_forwarded``, ``forwarded_allow_ips``) are not
    capped: they speak for many clients."""
    metrics_path: str = "/metrics"
    """Path of the Prometheus metrics page on the HTTP address (left out of the API reference); empty
    turns it off. Operational figures only (no user data), but restrict it at the proxy in front if they
    should stay private."""
    relay_key: str = Field(default="", repr=False)
    """The key that makes this facade a trusted relay of the core (sent as ``x-ashao-relay-key``): the
    contents of the core's ``relay.token``. Without it the core judges every user by the facade's own
    address."""
    relay_key_file: Path | None = None
    """A file holding ``relay_key`` (e.g. the core's ``<data_dir>/relay.token`` on the same machine)."""

    def core_relay_key(self) -> str:
        """The relay key, from ``relay_key`` or ``relay_key_file`` ('' when neither is set)."""
        if self.relay_key:
            return self.relay_key
        if self.relay_key_file is not None:
            return self.relay_key_file.read_text().strip()
        return ""

    @field_validator("metrics_path")
    @classmethod
    def _metrics_path(cls, value: str) -> str:
        if value and (
            not value.startswith("/") or value.startswith("/api/") or not value.isprintable() or " " in value
        ):
            raise ValueError("must be empty or a path such as /metrics (outside /api/)")
        return value

    @field_validator("http_addr")
    @classmethod
    def _listen_addr(cls, value: str) -> str:
        split_addr(value)
        return value

"""Settings of the worker agent: built once in ``main()`` from flags and environment, passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

CHAT_TIERS = ("free", "basic", "pro", "ultra")
"""The chat tiers of the contract (``WorkerHello.tiers``); a chat backend serves all of them unless told."""
IMAGE_TIER = "image"
"""The tier of image jobs."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSettings:
    """Everything the agent needs to run; nothing else reads flags or the environment."""

    core: str
    """``host:port`` of the core's gRPC server."""
    name: str
    """Display name of the worker; also names its credentials file."""
    tls: bool = False
    """Reach the core over TLS (verified against the system's roots, or ``tls_ca_file``)."""
    tls_ca_file: Path | None = None
    """PEM roots to verify the core's certificate with (implies ``tls``)."""
    data_dir: Path
    """Directory holding ``worker-<name>.json`` (the worker's id and token)."""
    backend: str | None = None
    """Chat backend: "openai" (a model server) or "synthetic" (development and load tests); None for none."""
    upstream: str = ""
    """Base URL of the OpenAI-compatible model server (with or without a trailing ``/v1``)."""
    model: str = ""
    """Model name the model server serves."""
    api_key: str = field(default="", repr=False)
    """Bearer key for the model server (from ``ASHAO_WORKER_API_KEY``)."""
    slots: int = 1
    """How many jobs run at once."""
    tiers: tuple[str, ...] = ()
    """Tiers to announce; empty derives them from the configured backends (see ``announced_tiers``)."""
    tokens_per_sec: float = 0.0
    """Pace of each synthetic job (0 = as fast as possible)."""
    synthetic_tokens: int = 16
    """Length of a synthetic answer in tokens."""
    synthetic_stamp: bool = False
    """Stamp each synthetic token with its emission time in ns (``tok3@1700000000000000000 ``)."""
    image_backend: str | None = None
    """Image backend: "openai" (``/v1/images/generations``) or "a1111" (``/sdapi/v1/txt2img``); None for none."""
    image_upstream: str = ""
    """Base URL of the image server."""
    image_model: str = ""
    """Model name for the OpenAI-compatible image server."""
    image_api_key: str = field(default="", repr=False)
    """Bearer key for the image server (from ``ASHAO_WORKER_IMAGE_API_KEY``)."""
    drain_timeout_s: float = 300.0
    """On SIGTERM, how long running jobs may take to finish before they are handed back."""
    call_timeout_s: float = 10.0
    """Deadline of RegisterWorker and of the core's Welcome on a new stream."""
    backoff_initial_s: float = 0.2
    """First pause before reconnecting; it doubles on every failed attempt."""
    backoff_max_s: float = 10.0
    """Longest pause before reconnecting."""
    stable_session_s: float = 5.0
    """A stream that lived this long resets the backoff (shorter ones keep it growing, so two agents
    fighting over one identity do not reconnect in a tight loop)."""
    max_pending_tokens: int = 4096
    """Tokens held before a batch is flushed early, whatever the flush interval."""
    shutdown_grace_s: float = 5.0
    """After draining, how long to wait for the core to close the half-closed stream."""

    @property
    def announced_tiers(self) -> tuple[str, ...]:
        """``tiers`` if given, else every chat tier with a chat backend plus "image" with an image backend."""
        if self.tiers:
            return self.tiers
        tiers: tuple[str, ...] = CHAT_TIERS if self.backend else ()
        return (*tiers, IMAGE_TIER) if self.image_backend else tiers

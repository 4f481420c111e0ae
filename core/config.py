"""Settings of the core process: flags over the environment (prefix ``ASHAO_``) over defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ashao_common.settings import Flag


class ProviderSpec(BaseModel):
    """One hosted provider of the relay's cascade: an OpenAI-compatible streaming upstream."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    name: str = Field(min_length=1)
    """Its name in the cascade, the health report and the relay's responses."""
    base_url: HttpUrl
    """Base URL of its API, with or without the trailing ``/v1``."""
    model: str = Field(min_length=1)
    """The model asked for."""
    api_key_env: str = ""
    """Environment variable holding its bearer key (read at start-up); none if empty."""
    first_chunk_timeout_s: float = Field(10.0, gt=0)
    """Longest wait for the first chunk, from asking for a connection on; then the cascade moves on."""
    total_timeout_s: float = Field(120.0, gt=0)
    """Longest a whole answer may take."""
    max_connections: int = Field(100, ge=1)
    """Most connections open to it at once (streams beyond wait for one, within the first-chunk deadline)."""


class CoreSettings(BaseSettings):
    """Everything the core reads from its environment; built once in ``main()`` and passed down."""

    model_config = SettingsConfigDict(env_prefix="ASHAO_", extra="ignore", use_attribute_docstrings=True)

    grpc_addr: str = "127.0.0.1:50051"
    """Address the gRPC server listens on (``host:port``; port 0 picks a free one)."""
    metrics_addr: str = ""
    """Address of the Prometheus metrics listener (``host:port`` serving ``GET /metrics``; port 0 picks a
    free one), e.g. ``127.0.0.1:9464``; off when empty. Keep it on a private address: it is not
    authenticated."""
    tls_cert_file: Path | None = None
    """PEM certificate chain to serve gRPC over TLS (with ``tls_key_file``); plaintext if unset. Workers
    reach the core across the internet: their tokens must not travel in clear."""
    tls_key_file: Path | None = None
    """PEM private key of ``tls_cert_file``."""
    data_dir: Path = Path(".ashao")
    """Directory holding the SQLite store (``ashao.db``) and the service's keys."""
    store: str = ""
    """Where the store lives: empty for the embedded SQLite file in ``data_dir``, or a PostgreSQL URL
    (``postgresql://user@host/db``) that several cores share."""
    store_pool_size: int = Field(8, ge=2)
    """PostgreSQL connections of this core: one for the writer's group commits, the rest for reads."""
    bus: str = ""
    """NATS URL (``nats://host:4222``, JetStream on) of the cluster: set, this core takes jobs from the
    queue every core shares and follows jobs other cores run. Needs a PostgreSQL ``store``."""
    cluster_name: str = Field("ashao", pattern=r"^[a-z][a-z0-9-]{0,31}$")
    """The cluster's name: it names its NATS stream and subjects and its Redis keys (several clusters may
    share one NATS and one Redis)."""
    advertise_addr: str = ""
    """``host:port`` other cores and facades reach this core at (default: the listening address, which
    must then not be a wildcard)."""
    peer_tls_ca_file: Path | None = None
    """PEM roots to verify other cores' certificates with, when the cores serve TLS (the system's roots
    if unset)."""
    limits: str = ""
    """Redis URL (``redis://host:6379/0``) for rate limits every core shares; each core limits on its
    own if empty (or while Redis is unreachable)."""
    db_synchronous: str = "FULL"
    """SQLite ``synchronous`` pragma: FULL makes every acknowledged group commit survive power loss."""
    commit_max_batch: int = 512
    """Most write operations one group commit carries."""
    heartbeat_interval_ms: int = 2000
    """How often stream workers heartbeat; three missed intervals lose a worker its jobs."""
    gc_log: str = ""
    """A file to append one line per garbage collection to (``<unix ns> <generation> <pause µs>``);
    off when empty. Pauses are on ``/metrics`` either way."""
    flush_interval_ms: int = 10
    """How long workers and the fan-out may hold tokens before sending a batch."""
    lease_timeout_s: float = 30.0
    """A pull worker that neither publishes nor heartbeats for this long loses its job."""
    job_stall_timeout_s: float = 120.0
    """A stream worker's chat job with no new token for this long is taken back and retried."""
    max_attempts: int = 3
    """How many workers may try one job before it fails for good."""
    queue_timeout_s: float = 600.0
    """A job still queued after this long expires."""
    release_after_s: float = 10.0
    """Several cores: a job this core took from the shared queue but could not start for this long
    (its worker left) is handed back for another core."""
    cluster_ack_wait_s: float = Field(30.0, ge=1.0)
    """Several cores: how long a job this core took from the shared queue stays its own unless renewed
    (this core renews its jobs every third of it while it runs); the jobs of a core that died go to
    another core after this long."""
    continuation_timeout_s: float = 30.0

    """A job cut off mid-answer waits this long for a worker that continues a partial answer; then it
    ends with an error and is refunded (starting the answer over would splice two answers)."""
    max_content_chars: int = 32_000
    """Longest user message accepted."""
    max_history_messages: int = 200
    """Most messages of a conversation carried to the worker (the latest ones)."""
    finished_tokens_kept: int = 1_000_000
    """Tokens of finished jobs kept in memory for late subscribers (older jobs are read from the store)."""
    signin_domain: str = "127.0.0.1:8080"
    """The domain wallets sign in to (the host users see in their browser); checked in every message."""
    signin_uri: str = "http://127.0.0.1:8080"
    """The URI written into sign-in messages."""
    signin_chain_id: str = "mainnet"
    """The Solana cluster named in sign-in messages."""
    session_ttl_s: float = 7 * 24 * 3600.0
    """How long a session lasts."""
    snapshot_interval_s: float = 60.0
    """How often a treasury snapshot is taken (and staking rewards paid)."""
    image_timeout_s: float = 120.0
    """How long a GenerateImage call waits for a worker's picture before refunding."""
    relay_persona: str = "xion"
    """The ``role`` of successful relay responses."""
    relay_endpoint: str = "http://127.0.0.1:8080"
    """The relay's public URL, as listed in the signed registry (several facades: their URLs,
    comma-separated, each listed with the same key)."""
    relay_require_auth: bool = False
    """Refuse anonymous relay callers (401 AuthChallenge)."""
    relay_billing_gate: bool = False
    """Require a signed payment commitment per relay message (402 PaymentChallenge)."""
    relay_rate_per_principal: float = 1.0
    """Relay requests per second each principal may sustain."""
    relay_burst_per_principal: float = 5.0
    """Relay requests a principal may make at once."""
    relay_rate_per_ip: float = 2.0
    """Relay requests per second each IP may sustain."""
    relay_burst_per_ip: float = 10.0
    """Relay requests an IP may make at once."""
    relay_daily_quota: int = 0
    """Relay requests per principal per UTC day (0 = no quota)."""
    relay_floor_required: bool = True
    """Refuse (503 NoFloorEnvelope) while the open-weights floor (the network's workers) is unhealthy."""
    relay_floor_tier: str = "free"
    """The network tier the floor sends relay work on."""
    relay_providers: Annotated[list[ProviderSpec], NoDecode, Flag(metavar="JSON")] = []
    """Hosted providers, in cascade order, as JSON: ``[{"name", "base_url", "model", "api_key_env",
    "first_chunk_timeout_s", "total_timeout_s", "max_connections"}]``; the floor comes after them."""
    relay_breaker_threshold: int = 3
    """Consecutive failures that open a provider's breaker."""
    relay_breaker_cooldown_s: float = 30.0
    """How long an open breaker waits before its probe."""
    relay_max_message_chars: int = 32_000
    """Longest relay message accepted."""
    moderation_policy: Path | None = None
    """JSON policy file for moderation (categories and rules); the built-in policy if unset."""
    moderation_classifier_url: str = ""
    """Base URL of an OpenAI-compatible ``/v1/moderations`` classifier (optional)."""
    moderation_classifier_key_env: str = "ASHAO_MODERATION_API_KEY"
    """Environment variable holding the classifier's key."""
    moderation_classifier_failure: str = "refuse"
    """What an unreachable classifier means: "refuse" or "allow" (policy only)."""
    subscribe_max_tokens_per_message: int = 4096
    """Most tokens one Subscribe/StreamJob message carries; longer backlogs are split."""
    subscribe_pace_max_ms: float = Field(50.0, ge=0)
    """Under load, a Subscribe stream holds tokens up to this long so that a job's go out in fewer,
    fuller messages (its first tokens never wait); the window grows with the stream's tokens/s."""
    subscribe_pace_full_tokens_per_s: float = Field(30_000.0, gt=0)
    """The tokens/s at which a Subscribe stream's window reaches ``subscribe_pace_max_ms`` (between
    ``subscribe_pace_floor_tokens_per_s`` and this, in proportion)."""
    subscribe_pace_floor_tokens_per_s: float = Field(5_000.0, ge=0)
    """Up to this many tokens/s a Subscribe stream has no window: every message goes at once."""
    subscribe_max_watches: int = Field(100_000, ge=1)
    """Most jobs one Subscribe stream may follow at once (a trusted relay follows all its clients')."""
    subscribe_max_watches_untrusted: int = Field(1_000, ge=1)
    """Most jobs one Subscribe stream of a caller that is not a trusted relay may follow at once."""
    worker_probation_slots: int = Field(2, ge=1)
    """Jobs a newly connected worker is given at once, whatever it claims; each answer it delivers earns
    it one more, each job lost on its side halves what it earned."""
    worker_registration: Literal["open", "token_or_wallet", "token", "wallet"] = "token_or_wallet"
    """Who may register a worker: anyone ("open", for closed test networks), or only with a join token
    the operator issued and/or an owner wallet's signature."""
    register_rate_per_ip: float = Field(0.2, gt=0)
    """Worker registrations per second each address may sustain."""
    register_burst_per_ip: float = Field(10.0, ge=1)
    """Worker registrations an address may make at once."""
    send_rate_per_ip: float = Field(20.0, gt=0)
    """Free-tier sends per second each caller (and each address) may sustain; priced tiers are bounded
    by their credits."""
    send_burst_per_ip: float = Field(100.0, ge=1)
    """Free-tier sends each caller (and each address) may make at once."""
    relay_keys: Annotated[list[str], NoDecode, Flag(metavar="KEYS")] = []
    """Further relay keys accepted besides ``<data_dir>/relay.token`` (comma-separated): a call carrying
    one as ``x-ashao-relay-key`` is a trusted relay, whose named end-user addresses are believed."""

    @field_validator("store")
    @classmethod
    def _store_url(cls, value: str) -> str:
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be empty (SQLite in data_dir) or a postgresql:// URL")
        return value

    @field_validator("bus")
    @classmethod
    def _bus_url(cls, value: str) -> str:
        if value and not value.startswith(("nats://", "tls://")):
            raise ValueError("must be empty (one core) or a nats:// URL")
        return value

    @field_validator("limits")
    @classmethod
    def _limits_url(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be empty (limits in this process) or a redis:// URL")
        return value

    @model_validator(mode="after")
    def _cluster_needs_shared_store(self) -> CoreSettings:
        if self.bus and not self.store:
            raise ValueError("bus: several cores need a store they share (set store to a postgresql:// URL)")
        return self

    @property
    def peer_address(self) -> str:
        """The address others reach this core at."""
        return self.advertise_addr or self.grpc_addr

    @field_validator("metrics_addr")
    @classmethod
    def _metrics_addr(cls, value: str) -> str:
        _, sep, port = value.rpartition(":")
        if value and (not sep or not port.isdigit() or int(port) > 65535):
            raise ValueError(f"not host:port: {value!r}")
        return value

    @field_validator("relay_keys", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        """Comma-separated text from a flag or the environment."""
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("relay_providers", mode="before")
    @classmethod
    def _providers_json(cls, value: object) -> object:
        """The JSON text of a flag or the environment (Python callers may pass the list itself)."""
        if isinstance(value, str | bytes):
            try:
                return orjson.loads(value or "[]")
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"not JSON: {exc}") from None
        return value

    @field_validator("relay_providers")
    @classmethod
    def _providers_unique(cls, value: list[ProviderSpec]) -> list[ProviderSpec]:
        names = [p.name for p in value]
        for i, name in enumerate(names):
            if name in names[:i] or name == "network":
                raise ValueError(f"entry {i}: the name {name!r} is taken (by an earlier entry or the floor)")
        return value

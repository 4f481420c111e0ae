"""A whole network on loopback for tests that drive the facade from outside (schemathesis, the
authorization matrix): a core, the facade as its trusted relay, a stream worker agent serving every
chat tier and images, a signed-in user with plenty of credits, and a pull worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ashao.v1 import account_pb2
from tests.helpers.agents import agent_settings, running
from tests.helpers.images import png
from tests.helpers.stack import Stack, start_stack, stop_stack
from worker_agent.backends import ChatBackend, ChatRequest, Emit
from worker_agent.backends.images import ImageBackend

GENEROUS = 1e9
"""Rate limits that a test's own traffic never reaches."""


class PngBackend:
    """An image backend that draws the same tiny picture at once."""

    async def generate(
        self, *, prompt: str, style: str, width: int, height: int, nsfw: bool
    ) -> tuple[bytes, str]:
        return png(2, 2), "image/png"

    async def aclose(self) -> None:
        return None


class StepBackend:
    """A chat backend whose answers the test releases token by token: ``release(n)`` lets every
    running answer emit up to ``n`` more of its tokens ``"tok{i} "`` (as the synthetic backend names
    them), so a test sees each token arrive without waiting on a clock."""

    continues_prefix = True

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens
        self.released = 0
        """Tokens every answer may have emitted so far."""
        self._more = asyncio.Event()

    def release(self, n: int = 1) -> None:
        """Let each answer emit ``n`` more tokens."""
        self.released += n
        more, self._more = self._more, asyncio.Event()
        more.set()

    async def generate(self, request: ChatRequest, emit: Emit) -> str:
        i = len(request.prefix.split())
        end = min(self.tokens, i + max(0, request.max_tokens))
        while i < end:
            while self.released <= i:
                await self._more.wait()
            emit([f"tok{i} "])
            i += 1
        return "stop"

    async def aclose(self) -> None:
        return None


@dataclass
class LiveNet:
    """What a test drives: the stack, and the credentials of its user and pull worker."""

    stack: Stack
    user_token: str
    """A signed-in user's session token (also good as `Authorization: Bearer`)."""
    worker_token: str
    """The token of a pull worker serving the ``ultra`` tier only (the agent serves every tier)."""

    @property
    def url(self) -> str:
        return self.stack.facade.url


@contextlib.asynccontextmanager
async def live_network(
    tmp_path: Path,
    *,
    chat_backend: ChatBackend | None = None,
    image_backend: ImageBackend | None = None,
    **core_overrides: Any,
) -> AsyncIterator[LiveNet]:
    """Start the network (its agent answering with ``chat_backend``, the synthetic backend when None,
    and drawing with ``image_backend``, ``PngBackend`` when None); stop it all at the end."""
    overrides: dict[str, Any] = {
        "send_rate_per_ip": GENEROUS,
        "send_burst_per_ip": GENEROUS,
        "relay_rate_per_ip": GENEROUS,
        "relay_burst_per_ip": GENEROUS,
        "relay_rate_per_principal": GENEROUS,
        "relay_burst_per_principal": GENEROUS,
        **core_overrides,
    }
    stack = await start_stack(tmp_path, overrides, relay_key_file=tmp_path / "data" / "relay.token")
    try:
        core = stack.core
        md = await core.sign_in(credits=10**9)
        user_token = md[0][1].removeprefix("Bearer ")
        _, worker_token = await core.register(slots=1, tiers=("ultra",))
        settings = agent_settings(
            tmp_path,
            core.app.address,
            join_token=await core.join_token(),
            slots=8,
            # announce the image tier; the pictures come from PngBackend, never from this address
            image_backend="openai",
            image_upstream="http://127.0.0.1:9",
            image_model="test",
        )
        async with running(settings, chat_backend, image_backend=image_backend or PngBackend()):
            yield LiveNet(stack, user_token, worker_token)
    finally:
        await stop_stack(stack)


async def grant(net: LiveNet, user_id: str, credits: int) -> None:
    """The operator grants ``credits`` to ``user_id``."""
    await net.stack.core.accounts.GrantCredits(
        account_pb2.GrantCreditsRequest(user=user_id, amount=credits), metadata=net.stack.core.operator
    )

"""The floor: the network's own workers serving open-weights models, reached through the job queue.

When the relay's hosted providers fail (or none is configured), a relay request becomes a job on the
floor's tier, and its tokens come back through the same event log any subscriber reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from core.identity.principal import Principal
from core.jobs.ask import ChatAsk
from core.jobs.system import JobSystem
from core.relay.providers import ProviderError, Usage
from core.streams.fanout import Follower

RELAY = Principal("service", ip="relay")
"""The principal the relay acts as when it sends work to the network."""


class NetworkProvider:
    """The floor: the network's own workers serving open-weights models, through the job queue."""

    is_floor = True

    def __init__(
        self,
        *,
        jobs: JobSystem,
        tier: str,
        model_id: str,
        first_chunk_timeout_s: float = 30.0,
        total_timeout_s: float = 300.0,
    ) -> None:
        self.name = "network"
        self.model_id = model_id
        self._jobs = jobs
        self._tier = tier
        self._first = first_chunk_timeout_s
        self._total = total_timeout_s

    def healthy(self) -> bool:
        """A live worker serving the floor's tier holds a stream."""
        return self._jobs.serving(self._tier)

    async def stream(
        self, messages: list[dict[str, str]], max_tokens: int, usage: Usage
    ) -> AsyncIterator[str]:
        """Run the conversation as a job; relay its tokens."""
        content = messages[-1]["content"]
        job_id = (await self._jobs.admission.send(ChatAsk(tier=self._tier, content=content), RELAY)).job_id
        job_log, _ = await self._jobs.queries.open_log(job_id, RELAY)
        follower = Follower(job_log, 0, max_tokens_per_message=4096)
        deadline = time.monotonic() + self._total
        first = True
        ended = False
        try:
            while True:
                timeout = self._first if first else max(0.1, deadline - time.monotonic())
                try:
                    events = await asyncio.wait_for(follower.next(), timeout)
                except TimeoutError as exc:
                    raise ProviderError(f"network: no tokens within {timeout:.0f} s") from exc
                if events is None:
                    ended = True
                    return
                for token in events.tokens:
                    first = False
                    usage.output_tokens += 1
                    yield token
                t = events.terminal
                if t is not None:
                    ended = True
                    if t.kind != "done":
                        raise ProviderError(f"network: {t.message}")
                    usage.input_tokens = sum(len(m["content"]) for m in messages) // 4 + 1
                    return
        finally:
            follower.close()
            if not ended:  # the caller left (or timed out): do not keep a worker generating for nobody
                self._jobs.lifecycle.cancel(job_id, "the relay caller left")

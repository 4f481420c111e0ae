"""Entry point of the worker agent (``python -m worker_agent``, ``ashao worker``): flags → settings → run.

A real deployment names its backend: ``--backend openai --upstream URL --model NAME`` for a model
server (vLLM, llama.cpp, Ollama, TGI), and/or ``--image-backend`` for an image server. The
``synthetic`` backends (chat and image) run no model; they are for development and load tests.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Mapping

from ashao_common.settings import load_settings
from ashao_common.tracing import configure as configure_tracing
from worker_agent import AgentError
from worker_agent.agent import Agent
from worker_agent.backends import ChatBackend
from worker_agent.backends.images import A1111Backend, ImageBackend, OpenAIImagesBackend
from worker_agent.backends.openai import OpenAIBackend
from worker_agent.backends.synthetic import SyntheticBackend
from worker_agent.backends.synthetic_image import SyntheticImageBackend
from worker_agent.config import AgentSettings
from worker_agent.identity import CredentialsError

log = logging.getLogger("ashao.worker")

EXIT_ABORTED = 1


def parse(argv: list[str] | None, environ: Mapping[str, str] | None = None) -> AgentSettings:
    """Settings from ``argv`` over ``environ`` (``os.environ`` if None); exits with a usage error when
    they don't fit."""
    return load_settings(
        AgentSettings,
        argv,
        prog="ashao worker",
        description="Run a worker agent: serve jobs of an ashao core on a model backend.",
        environ=environ,
    )


def build_chat_backend(settings: AgentSettings) -> ChatBackend | None:
    """The chat backend the settings name, if any."""
    if settings.backend == "openai":
        return OpenAIBackend(
            upstream=settings.upstream,
            model=settings.model,
            api_key=settings.api_key,
            max_connections=settings.slots + 1,
            continuation=settings.continuation,
        )

    if settings.backend == "synthetic":
        return SyntheticBackend(
            tokens=settings.synthetic_tokens,
            tokens_per_sec=settings.tokens_per_sec,
            stamp=settings.synthetic_stamp,
        )
    return None


def build_image_backend(settings: AgentSettings) -> ImageBackend | None:
    """The image backend the settings name, if any."""
    if settings.image_backend == "openai":
        return OpenAIImagesBackend(
            upstream=settings.image_upstream, model=settings.image_model, api_key=settings.image_api_key
        )
    if settings.image_backend == "a1111":
        return A1111Backend(upstream=settings.image_upstream)
    if settings.image_backend == "synthetic":
        return SyntheticImageBackend()
    return None


async def run(settings: AgentSettings) -> int:
    """Run the agent until SIGTERM/SIGINT has drained it (0), a second signal aborted it, or it failed."""
    chat = build_chat_backend(settings)
    image = build_image_backend(settings)
    tracer = configure_tracing("ashao-worker")
    agent = Agent(settings=settings, backend=chat, image_backend=image, tracer=tracer)
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal(sig: signal.Signals) -> None:
        """The first signal drains, the next aborts."""
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("%s: draining (send it again to stop at once)", sig.name)
            agent.drain()
        else:
            log.warning("%s again: stopping now", sig.name)
            agent.abort()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await agent.run()
    except (AgentError, CredentialsError) as exc:
        log.error("%s", exc)
        return 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if chat is not None:
            await chat.aclose()
        if image is not None:
            await image.aclose()
        if tracer is not None:
            await asyncio.to_thread(tracer.shutdown)  # the spans still buffered are exported
    return EXIT_ABORTED if agent.aborted else 0


def main(argv: list[str] | None = None) -> int:
    """Run the worker agent; returns the exit code."""
    settings = parse(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per upstream request otherwise
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(run(settings))

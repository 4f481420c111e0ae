"""Entry point of the worker agent (``python -m worker_agent``, ``ashao worker``): flags → settings → run.

A real deployment names its backend: ``--backend openai --upstream URL --model NAME`` for a model
server (vLLM, llama.cpp, Ollama, TGI), and/or ``--image-backend`` for an image server. The
``synthetic`` backend runs no model; it is for development and load tests.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from worker_agent import AgentError
from worker_agent.agent import Agent
from worker_agent.backends import ChatBackend
from worker_agent.backends.images import A1111Backend, ImageBackend, OpenAIImagesBackend
from worker_agent.backends.openai import OpenAIBackend
from worker_agent.backends.synthetic import SyntheticBackend
from worker_agent.config import IMAGE_TIER, AgentSettings
from worker_agent.identity import CredentialsError

log = logging.getLogger("ashao.worker")

MAX_SLOTS = 1024
EXIT_ABORTED = 1


def parse(argv: list[str] | None, environ: Mapping[str, str]) -> AgentSettings:
    """Settings from ``argv`` with defaults from ``environ``; exits with a usage error when they don't fit."""
    p = argparse.ArgumentParser(
        prog="ashao worker",
        description="Run a worker agent: serve jobs of an ashao core on a model backend.",
    )
    p.add_argument(
        "--core",
        default=environ.get("ASHAO_GRPC_ADDR") or "127.0.0.1:50051",
        help="host:port of the core's gRPC server (env ASHAO_GRPC_ADDR; default 127.0.0.1:50051)",
    )
    p.add_argument(
        "--tls", action="store_true", help="reach the core over TLS, verified against the system's roots"
    )
    p.add_argument(
        "--tls-ca", type=Path, help="PEM roots to verify the core's certificate with (implies --tls)"
    )
    p.add_argument("--name", default=socket.gethostname(), help="worker name (default: the host name)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(environ.get("ASHAO_DATA_DIR") or ".ashao"),
        help="where the worker's credentials are kept (env ASHAO_DATA_DIR; default ./.ashao)",
    )
    p.add_argument(
        "--backend",
        choices=("openai", "synthetic"),
        help="chat backend: openai (an OpenAI-compatible model server) or synthetic (development and "
        "load tests only; runs no model). Required unless only an image backend is given.",
    )
    p.add_argument("--upstream", default="", help="model server URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", default="", help="model name the model server serves")
    p.add_argument("--slots", type=int, default=1, help="jobs run at once (default 1)")
    p.add_argument(
        "--tiers", default="", help="comma-separated tiers to serve (default: all the backends can)"
    )
    p.add_argument(
        "--tokens-per-sec", type=float, default=0.0, help="synthetic: pace per job (0 = as fast as possible)"
    )
    p.add_argument(
        "--synthetic-tokens", type=int, default=16, help="synthetic: tokens per answer (default 16)"
    )
    p.add_argument(
        "--synthetic-stamp", action="store_true", help="synthetic: stamp each token with its emit time (ns)"
    )
    p.add_argument("--image-backend", choices=("openai", "a1111"), help="image backend")
    p.add_argument("--image-upstream", default="", help="image server URL")
    p.add_argument("--image-model", default="", help="image model name (openai image backend)")
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=300.0,
        help="on SIGTERM, seconds running jobs may take to finish (default 300)",
    )
    args = p.parse_args(argv)

    if args.backend is None and args.image_backend is None:
        p.error("--backend is required (openai for a model server; synthetic for development only)")
    if args.backend == "openai" and not (args.upstream and args.model):
        p.error("--backend openai needs --upstream and --model")
    if args.image_backend and not args.image_upstream:
        p.error("--image-backend needs --image-upstream")
    if args.image_backend == "openai" and not args.image_model:
        p.error("--image-backend openai needs --image-model")
    if not 1 <= args.slots <= MAX_SLOTS:
        p.error(f"--slots must be between 1 and {MAX_SLOTS}")
    if args.tokens_per_sec < 0 or args.synthetic_tokens < 0 or args.drain_timeout < 0:
        p.error("--tokens-per-sec, --synthetic-tokens and --drain-timeout must not be negative")
    if not args.name.strip():
        p.error("--name must not be empty")
    tiers = tuple(t.strip() for t in args.tiers.split(",") if t.strip())
    if any(t != IMAGE_TIER for t in tiers) and args.backend is None:
        p.error("--tiers names a chat tier but no --backend is given")
    if IMAGE_TIER in tiers and args.image_backend is None:
        p.error("--tiers names the image tier but no --image-backend is given")

    if args.tls_ca is not None and not args.tls_ca.is_file():
        p.error(f"--tls-ca: no such file {args.tls_ca}")
    return AgentSettings(
        core=args.core,
        tls=args.tls or args.tls_ca is not None,
        tls_ca_file=args.tls_ca,
        name=args.name.strip(),
        data_dir=args.data_dir,
        backend=args.backend,
        upstream=args.upstream,
        model=args.model,
        api_key=environ.get("ASHAO_WORKER_API_KEY", ""),
        slots=args.slots,
        tiers=tiers,
        tokens_per_sec=args.tokens_per_sec,
        synthetic_tokens=args.synthetic_tokens,
        synthetic_stamp=args.synthetic_stamp,
        image_backend=args.image_backend,
        image_upstream=args.image_upstream,
        image_model=args.image_model,
        image_api_key=environ.get("ASHAO_WORKER_IMAGE_API_KEY", ""),
        drain_timeout_s=args.drain_timeout,
    )


def build_chat_backend(settings: AgentSettings) -> ChatBackend | None:
    """The chat backend the settings name, if any."""
    if settings.backend == "openai":
        return OpenAIBackend(
            upstream=settings.upstream,
            model=settings.model,
            api_key=settings.api_key,
            max_connections=settings.slots + 1,
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
    return None


async def run(settings: AgentSettings) -> int:
    """Run the agent until SIGTERM/SIGINT has drained it (0), a second signal aborted it, or it failed."""
    chat = build_chat_backend(settings)
    image = build_image_backend(settings)
    agent = Agent(settings=settings, backend=chat, image_backend=image)
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
    return EXIT_ABORTED if agent.aborted else 0


def main(argv: list[str] | None = None) -> int:
    """Run the worker agent; returns the exit code."""
    settings = parse(argv, os.environ)
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

"""The ``ashao`` command: ``up``, ``core``, ``facade``, ``worker``, ``status``, and the operator's
``credits`` and ``workers``.

Each subcommand runs one process of the system; ``up`` starts them all as child processes (the
core, the HTTP facade and local workers), exactly as they would run on separate machines, and
stops them in order on SIGINT/SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from importlib import metadata

from ashao_cli.config import UpSettings
from ashao_cli.devnet import LocalNetwork, consecutive, preferring
from ashao_cli.model import MODELS, ModelUnavailableError, free_loopback_addr, threads_each, weights
from ashao_common.settings import load_settings

USAGE = """usage: ashao COMMAND [options]      (ashao COMMAND --help: its options, defaults, variables)

commands:
  up        core + HTTP facade + local workers (synthetic, or a real model on CPU with
            --model smollm2), on the embedded SQLite store
  core      the gRPC core alone
  facade    the HTTP/SSE facade alone (talks to a core)
  worker    a worker agent (runs jobs on a model backend)
  status    the network at a glance: workers, slots, tokens/s, queue depth per tier, streams
  credits   operator: grant credits to a user (ashao credits grant --user U --amount N)
  workers   operator: join tokens for workers, the list of workers, revocation

options:
  -h, --help     this help
  -V, --version  the installed version of ashao
"""


def version() -> str:
    """The installed version of ashao (from its package metadata)."""
    try:
        return metadata.version("ashao")
    except metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a subcommand; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        print(f"ashao {version()}")
        return 0
    command, rest = args[0], args[1:]
    if command == "up":
        return up(rest)
    if command == "core":
        from core.main import main as core_main

        return core_main(rest)
    if command == "facade":
        from facade.main import main as facade_main

        return facade_main(rest)
    if command == "worker":
        from worker_agent.main import main as worker_main

        return worker_main(rest)
    if command == "status":
        from ashao_cli.status import status

        return status(rest)
    if command == "credits":
        from ashao_cli.operator import credits

        return credits(rest)
    if command == "workers":
        from ashao_cli.operator import workers

        return workers(rest)

    print(f"ashao: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


LOOPBACK_REDIS = "redis://127.0.0.1:6379/0"
"""The Redis ``ashao up`` shares rate limits through among several cores when ``--limits`` is not given
(if it answers)."""


def redis_answers(url: str, timeout_s: float = 0.5) -> bool:
    """Whether the Redis at ``url`` answers a PING."""
    import redis  # (only when several cores start: every other command starts without it)
    from redis.exceptions import RedisError

    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return bool(client.ping())
    except (RedisError, OSError):
        return False
    finally:
        client.close()


def up(argv: list[str]) -> int:
    """Run core, facade and ``--local-workers`` workers (synthetic, or each on its own server of
    ``--model``) until SIGINT/SIGTERM."""
    args = load_settings(
        UpSettings, argv, prog="ashao up", description="Start the whole network on this machine."
    )

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    limits = args.limits
    if args.cores > 1 and not limits:
        # several cores: a caller must not get one limit per core; a Redis on loopback is used if one answers
        if redis_answers(LOOPBACK_REDIS):
            limits = LOOPBACK_REDIS
            print(
                f"ashao up: rate limits shared through {limits} (found on loopback; --limits names another)"
            )
        else:
            print(
                "ashao up: no --limits and no Redis on loopback: each core applies the rate limits on its own "
                f"(a caller spreading its requests over the {args.cores} cores gets up to {args.cores} times them)",
                file=sys.stderr,
            )
    cluster = {"ASHAO_STORE": args.store, "ASHAO_BUS": args.bus, "ASHAO_LIMITS": limits}
    cores = consecutive(args.grpc_addr, args.cores)
    facades = consecutive(args.http_addr, args.facades)
    if len(facades) > 1 and "ASHAO_RELAY_ENDPOINT" not in os.environ:  # the registry lists every facade
        cluster["ASHAO_RELAY_ENDPOINT"] = ",".join(f"http://{a}" for a in facades)
    net = LocalNetwork(
        data_dir=args.data_dir,
        http_addr=args.http_addr,
        grpc_addr=args.grpc_addr,
        extra_env={k: v for k, v in cluster.items() if v},
    )
    model = MODELS.get(args.model)
    try:
        try:
            if model is not None and args.local_workers:
                weights(model)  # installed? (before anything starts)
            for i, addr in enumerate(cores):
                # every core keeps its keys in a data directory of its own (a cluster's are the same)
                data_dir = args.data_dir if i == 0 else args.data_dir / f"core-{i + 1}"
                net.start_core(name=f"core-{i + 1}", grpc_addr=addr, data_dir=data_dir)
            for i in range(args.local_workers):
                if model is None:
                    net.start_local_worker(
                        f"local-{i + 1}",
                        slots=args.worker_slots,
                        tokens_per_sec=args.tokens_per_sec,
                        cores=preferring(cores, i),
                    )
                    continue
                server = free_loopback_addr()
                net.start_model_server(
                    f"model-{i + 1}", model, addr=server, threads=threads_each(args.local_workers)
                )
                net.start_model_worker(f"local-{i + 1}", model, upstream=server, cores=preferring(cores, i))
            for i, addr in enumerate(facades):
                net.start_facade(name=f"facade-{i + 1}", http_addr=addr, cores=preferring(cores, i))
        except ModelUnavailableError as exc:
            print(f"ashao up: {exc}", file=sys.stderr)
            return 2
        except RuntimeError as exc:
            print(f"ashao up: {exc}", file=sys.stderr)
            return 1
        print(
            f"ashao up: HTTP on {', '.join(f'http://{a}' for a in facades)}  gRPC on {', '.join(cores)}  "
            f"{args.local_workers} local {args.model} worker(s)  data in {args.data_dir}\n"
            f"  try: curl -s -X POST http://{args.http_addr}/api/chat/send "
            '-H \'Content-Type: application/json\' -d \'{"tier":"free","content":"hello"}\'',
            flush=True,
        )
        while not stopping:
            if (name := net.failed()) is not None:
                print(f"ashao up: {name} exited; stopping", file=sys.stderr)
                return 1
            time.sleep(0.2)
        return 0
    finally:
        net.stop()
        print("ashao up: stopped", flush=True)

"""Operator commands that talk to a running core with the operator token from its data directory:
``ashao credits grant``, ``ashao workers join-token | list | revoke``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import grpc

from ashao.v1 import account_pb2, account_pb2_grpc, operator_pb2, operator_pb2_grpc

T = TypeVar("T")
MAX_GRANT = 10**12


def operator_token(data_dir: Path) -> str:
    """The operator token the core keeps in ``<data_dir>/operator.token``."""
    return (data_dir / "operator.token").read_text().strip()


async def _call(
    addr: str, token: str, fn: Callable[[grpc.aio.Channel, tuple[tuple[str, str]]], Awaitable[T]]
) -> T:
    async with grpc.aio.insecure_channel(addr) as channel:
        return await fn(channel, (("authorization", f"Bearer {token}"),))


def issue_join_token(addr: str, data_dir: Path, *, label: str, uses: int = 1, ttl_s: int = 0) -> str:
    """A new join token from the core at ``addr`` (for ``ashao up``'s own workers). A blocking call, so
    it may be made from code that runs an event loop of its own."""
    md = (("authorization", f"Bearer {operator_token(data_dir)}"),)
    with grpc.insecure_channel(addr) as channel:
        r = operator_pb2_grpc.OperatorServiceStub(channel).IssueJoinToken(
            operator_pb2.IssueJoinTokenRequest(label=label, uses=uses, ttl_s=ttl_s),
            metadata=md,
            timeout=10,
            wait_for_ready=True,
        )
    return r.join_token


def _amount(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be an integer") from None
    if not 1 <= value <= MAX_GRANT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_GRANT}")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--core",
        default=os.environ.get("ASHAO_GRPC_ADDR", "127.0.0.1:50051"),
        help="the core's gRPC address [default: 127.0.0.1:50051; env ASHAO_GRPC_ADDR]",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("ASHAO_DATA_DIR", ".ashao")),
        help="where the core keeps operator.token [default: .ashao; env ASHAO_DATA_DIR]",
    )


def _token_or_exit(prog: str, data_dir: Path) -> str | None:
    try:
        return operator_token(data_dir)
    except OSError as exc:
        print(f"{prog}: cannot read the operator token: {exc}", file=sys.stderr)
        return None


def credits(argv: list[str]) -> int:
    """``ashao credits grant --user USER --amount N [--memo TEXT]``."""
    p = argparse.ArgumentParser(prog="ashao credits", description="Manage credits (operator).")
    sub = p.add_subparsers(dest="action", required=True)
    g = sub.add_parser("grant", help="mint credits to a user (by id usr_… or wallet address)")
    g.add_argument("--user", required=True, help="the user's id (usr_…) or wallet address")
    g.add_argument("--amount", type=_amount, required=True, help=f"credits to mint, 1 to {MAX_GRANT}")
    g.add_argument("--memo", default="operator grant", help="a note kept with the ledger row")
    _common(g)
    args = p.parse_args(argv)
    token = _token_or_exit("ashao credits", args.data_dir)
    if token is None:
        return 2

    async def grant(channel: grpc.aio.Channel, md: tuple[tuple[str, str]]) -> tuple[str, int]:
        r = await account_pb2_grpc.AccountServiceStub(channel).GrantCredits(
            account_pb2.GrantCreditsRequest(user=args.user, amount=args.amount, memo=args.memo),
            metadata=md,
            timeout=10,
        )
        return r.user_id, r.credits

    try:
        uid, balance = asyncio.run(_call(args.core, token, grant))
    except grpc.aio.AioRpcError as err:
        print(f"ashao credits: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    print(f"granted {args.amount} credits to {uid}; balance now {balance}")
    return 0


def workers(argv: list[str]) -> int:
    """``ashao workers join-token | list | revoke WORKER_ID``."""
    p = argparse.ArgumentParser(prog="ashao workers", description="Who may join as a worker (operator).")
    sub = p.add_subparsers(dest="action", required=True)
    j = sub.add_parser("join-token", help="issue a join token a worker registers with (--join-token)")
    j.add_argument("--label", default="", help="a note for your records, e.g. who it is for")
    j.add_argument("--uses", type=int, default=1, help="how many workers may register with it [default: 1]")
    j.add_argument("--ttl", type=int, default=0, help="seconds it stays valid [default: 7 days]")
    _common(j)
    ls = sub.add_parser("list", help="every registered worker")
    _common(ls)
    r = sub.add_parser("revoke", help="revoke a worker: its token stops working, its jobs go to others")
    r.add_argument("worker_id", help="the worker (wrk_…)")
    _common(r)
    args = p.parse_args(argv)
    token = _token_or_exit("ashao workers", args.data_dir)
    if token is None:
        return 2

    async def run(channel: grpc.aio.Channel, md: tuple[tuple[str, str]]) -> str:
        stub = operator_pb2_grpc.OperatorServiceStub(channel)
        if args.action == "join-token":
            t = await stub.IssueJoinToken(
                operator_pb2.IssueJoinTokenRequest(label=args.label, uses=args.uses, ttl_s=args.ttl),
                metadata=md,
                timeout=10,
            )
            return (
                f"{t.join_token}\n(id {t.id}; start a worker with --join-token, or ASHAO_WORKER_JOIN_TOKEN)"
            )
        if args.action == "revoke":
            await stub.RevokeWorker(
                operator_pb2.RevokeWorkerRequest(worker_id=args.worker_id), metadata=md, timeout=10
            )
            return f"revoked {args.worker_id}"
        listed = await stub.ListWorkers(operator_pb2.ListWorkersRequest(), metadata=md, timeout=10)
        lines = [f"{'worker':26} {'name':16} {'slots':>9} {'running':>7} {'tok/s':>8}  owner"]
        for w in listed.workers:
            lines.append(
                f"{w.worker_id:26} {w.name[:16]:16} {w.trusted_slots:>4}/{w.slots:<4} {w.running:>7}"
                f" {w.tokens_per_sec:>8.1f}  {w.owner_address or '-'}{'' if w.connected else '  (offline)'}"
            )
        return "\n".join(lines)

    try:
        print(asyncio.run(_call(args.core, token, run)))
    except grpc.aio.AioRpcError as err:
        print(f"ashao workers: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    return 0

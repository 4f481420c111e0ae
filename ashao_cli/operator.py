"""Operator commands that talk to a running core with the operator token from its data directory."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import grpc

from ashao.v1 import account_pb2, account_pb2_grpc


async def _grant(addr: str, token: str, user: str, amount: int, memo: str) -> tuple[str, int]:
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = account_pb2_grpc.AccountServiceStub(channel)
        r = await stub.GrantCredits(
            account_pb2.GrantCreditsRequest(user=user, amount=amount, memo=memo),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )
        return r.user_id, r.credits


def credits(argv: list[str]) -> int:
    """``ashao credits grant --user USER --amount N [--memo TEXT]``."""
    p = argparse.ArgumentParser(prog="ashao credits", description="Manage credits (operator).")
    sub = p.add_subparsers(dest="action", required=True)
    g = sub.add_parser("grant", help="mint credits to a user (by id usr_… or wallet address)")
    g.add_argument("--user", required=True)
    g.add_argument("--amount", type=int, required=True)
    g.add_argument("--memo", default="operator grant")
    g.add_argument("--core", default=os.environ.get("ASHAO_GRPC_ADDR", "127.0.0.1:50051"))
    g.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("ASHAO_DATA_DIR", ".ashao")),
        help="where the core keeps operator.token",
    )
    args = p.parse_args(argv)
    token_file = args.data_dir / "operator.token"
    try:
        token = token_file.read_text().strip()
    except OSError as exc:
        print(f"ashao credits: cannot read the operator token: {exc}", file=sys.stderr)
        return 2
    try:
        uid, balance = asyncio.run(_grant(args.core, token, args.user, args.amount, args.memo))
    except grpc.aio.AioRpcError as err:
        print(f"ashao credits: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    print(f"granted {args.amount} credits to {uid}; balance now {balance}")
    return 0

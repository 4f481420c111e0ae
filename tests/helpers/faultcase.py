"""Pieces every fault case shares: the mix of clients, reading a running store, and a summary line."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import grpc
import orjson

from ashao.v1 import account_pb2, account_pb2_grpc, operator_pb2, operator_pb2_grpc
from ashao_cli.devnet import LocalNetwork
from ashao_cli.operator import operator_token
from tests.helpers.books import Books
from tests.helpers.load import Client, Load
from worker_agent.identity import credentials_path

WORKER_ARGS = (
    "--backend",
    "synthetic",
    "--slots",
    "32",
    "--tokens-per-sec",
    "20",
    "--synthetic-tokens",
    "40",
    "--synthetic-stamp",
)
"""Answers of 40 numbered, time-stamped tokens over 2 s: long enough to be cut in the middle, and a
spliced or repeated answer differs from the stored one."""

FAULT_ENV = {
    # Three missed heartbeats lose a worker its jobs: 1.5 s.
    "ASHAO_HEARTBEAT_INTERVAL_MS": "500",
    # The load comes from one address; the per-address limit of free sends is not under test here.
    "ASHAO_SEND_RATE_PER_IP": "100000",
    "ASHAO_SEND_BURST_PER_IP": "100000",
    # New workers run every slot at once (probation is not under test here): either worker can carry
    # the whole load when the other is lost.
    "ASHAO_WORKER_PROBATION_SLOTS": "32",
}

StartNetwork = Callable[..., LocalNetwork]
"""Starts core, facade and synthetic workers (the ``start_network`` fixture of the fault suite)."""


def mixed_clients(users: list[str], *, free: int = 12, priced: int = 12) -> list[Client]:
    """Anonymous free-tier clients and signed-in ones on the basic and pro tiers (users in turn),
    interleaved (so that both kinds start early)."""
    tiers = ("basic", "pro")
    frees = [Client("free") for _ in range(free)]
    paying = [Client(tiers[i % 2], users[i % len(users)]) for i in range(priced)]
    mixed = [c for pair in zip(frees, paying, strict=False) for c in pair]
    return mixed + frees[len(mixed) // 2 :] + paying[len(mixed) // 2 :]


def busy(load: Load) -> bool:
    """Whether free and priced answers are both being streamed (the moment to strike)."""
    priced = sum(1 for j in load.live if load.streams[j].tier != "free")
    return priced >= 4 and len(load.live) - priced >= 4


async def signed_in(load: Load, n: int) -> list[str]:
    """``n`` new users' session tokens."""
    return [await load.sign_in() for _ in range(n)]


async def grant(net: LocalNetwork, load: Load, session: str, amount: int) -> None:
    """The operator grants ``amount`` credits to the user signed in with ``session``."""
    r = await load.http.get("/api/auth/me", headers={"Authorization": f"Bearer {session}"})
    r.raise_for_status()
    user = r.json()["user"]["id"]
    md = (("authorization", f"Bearer {operator_token(net.data_dir)}"),)
    async with grpc.aio.insecure_channel(net.grpc_addr) as channel:
        await account_pb2_grpc.AccountServiceStub(channel).GrantCredits(
            account_pb2.GrantCreditsRequest(user=user, amount=amount), metadata=md, timeout=10
        )


async def connected(net: LocalNetwork, worker: str) -> bool:
    """Whether the core says ``worker`` holds a Connect stream now (the operator's view)."""
    md = (("authorization", f"Bearer {operator_token(net.data_dir)}"),)
    async with grpc.aio.insecure_channel(net.grpc_addr) as channel:
        r = await operator_pb2_grpc.OperatorServiceStub(channel).ListWorkers(
            operator_pb2.ListWorkersRequest(), metadata=md, timeout=10
        )
    return any(w.worker_id == worker and w.connected for w in r.workers)


def url(net: LocalNetwork) -> str:
    """The facade's base URL."""
    return f"http://{net.http_addr}"


def worker_id(net: LocalNetwork, name: str) -> str:
    """The id a worker agent registered as."""
    return str(orjson.loads(credentials_path(net.data_dir, name).read_bytes())["workerId"])


def query(db_path: Path, sql: str, params: Iterable[object] = ()) -> list[tuple[object, ...]]:
    """Rows of a read-only query (the store may be in use: WAL lets a reader in)."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10) as db:
        return db.execute(sql, tuple(params)).fetchall()


def attempts(db_path: Path, job_ids: Iterable[str]) -> dict[str, int]:
    """The ``attempts`` column of each of ``job_ids``."""
    wanted = set(job_ids)
    return {str(j): int(str(a)) for j, a in query(db_path, "SELECT id, attempts FROM jobs") if j in wanted}


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Wait until the async ``check()`` is true; fail naming ``what`` if it is not within ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"not reached in {timeout} s: {what}")
        await asyncio.sleep(0.02)


def summary(name: str, load: Load, books: Books) -> str:
    """One line of figures for the test output."""
    streams = load.streams.values()
    return (
        f"[{name}] sends {dict(load.sends)}, unacknowledged {load.unacknowledged}; streams {len(load.streams)}"
        f" done {load.done} error {load.errors}, resumed {sum(1 for s in streams if s.resumes)}"
        f" reopened {sum(1 for s in streams if s.restarts)}; opens {dict(load.stream_opens_by)};"
        f" jobs {books.by_state}, priced {books.priced} paid {books.paid} refunded {books.refunded}"
        f" escrow {books.escrow}"
    )

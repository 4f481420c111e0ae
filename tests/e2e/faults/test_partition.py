"""A core cut off from the cluster: its jobs go to the other core, and it comes back without settling
anything twice.

Core ``a`` runs in a network namespace of its own: it reaches PostgreSQL and NATS only through
forwarders on this side of a veth pair, and its worker (this test) over the pair too. Core ``b`` runs
here. The partition takes the link down and drops every connection ``a`` had through the forwarders;
healing brings both back. Needs root, ``ip`` with network namespaces, PostgreSQL and ``nats-server``
(skipped otherwise, with the reason).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import grpc
import pytest

from ashao.v1 import chat_pb2, network_pb2
from ashao_cli.devnet import wait_for_port
from core.economics import TIERS
from tests.helpers.books import read_books
from tests.helpers.core import Core, StreamWorker, collect, connect_worker
from tests.helpers.net import free_port
from tests.helpers.netns import Namespace, namespace
from tests.helpers.postgres import address, fresh_database, require_postgres, with_address
from tests.helpers.tcpproxy import TcpProxy
from tests.helpers.wait import eventually_async

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

TIER = "basic"
JOBS = 4
HOLD_LAPSE_S = 45.0
"""Upper bound on the shared queue handing a cut-off core's jobs to another: its holds last 30 s from
their last renewal (every 10 s), and the other core takes a job only once the first is no live core
(10 s without a heartbeat)."""


def _nats_server() -> str:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not os.access(binary, os.X_OK):
        pytest.skip("a partition test needs nats-server (NATS with JetStream) on this machine")
    return binary


def _spawn(args: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    """``args`` with ``env``; its output in ``log`` (kept with the test's files), else dropped."""
    out = log.open("wb") if log is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen(args, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    finally:
        if log is not None:
            out.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@asynccontextmanager
async def _processes() -> AsyncIterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in reversed(started):
            await asyncio.to_thread(_stop, proc)


def _remote(addr: str, data_dir: Path) -> Core:
    """Stubs on the core at ``addr`` (a process of the test; the cluster's keys are in ``data_dir``)."""
    app: Any = SimpleNamespace(settings=SimpleNamespace(data_dir=data_dir))
    return Core(app, grpc.aio.insecure_channel(addr))


async def _copy_books(dsn: str, path: Path) -> None:
    """The tables the books check reads, from PostgreSQL into a SQLite file it can read."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        tables = {
            "ledger": "debit, credit, amount, reason, ref",
            "jobs": "id, state, cost, payer, tokens, output",
            "settlements": "job_id, outcome",
        }
        with sqlite3.connect(path) as db:
            for table, columns in tables.items():
                rows = await conn.fetch(f"SELECT {columns} FROM {table}")
                db.execute(f"CREATE TABLE {table} ({columns})")
                marks = ",".join("?" * len(columns.split(",")))
                db.executemany(f"INSERT INTO {table} VALUES ({marks})", [tuple(r) for r in rows])
    finally:
        await conn.close()


@asynccontextmanager
async def _beating(worker: StreamWorker) -> AsyncIterator[asyncio.Lock]:
    """``worker`` heartbeats every second for the block; writes to its stream take the lock yielded."""
    lock = asyncio.Lock()

    async def beat() -> None:
        while True:
            await asyncio.sleep(1.0)
            async with lock:
                await worker.heartbeat()

    task = asyncio.ensure_future(beat())
    try:
        yield lock
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _serve(worker: StreamWorker, lock: asyncio.Lock, answer: list[str], served: set[str]) -> None:
    """Answer every assignment ``worker`` gets with ``answer``, until its stream ends."""
    while True:
        msg = await worker.call.read()
        if msg is grpc.aio.EOF:
            return
        if msg.HasField("assignment"):
            job_id = msg.assignment.job_id
            served.add(job_id)
            async with lock:
                await worker.tokens(job_id, answer)
                await worker.complete(job_id)


async def test_a_partitioned_core_loses_its_jobs_to_the_other_and_rejoins_cleanly(tmp_path: Path) -> None:
    binary = _nats_server()
    admin = await require_postgres()
    with namespace() as ns:
        async with fresh_database(admin) as dsn, _processes() as procs:
            await _partition_case(ns, dsn, binary, procs, tmp_path)


async def _partition_case(
    ns: Namespace, dsn: str, binary: str, procs: list[subprocess.Popen[bytes]], tmp: Path
) -> None:
    nats_port = free_port()
    with tempfile.TemporaryDirectory(prefix="ashao-nats-") as store_dir:
        procs.append(_spawn([binary, "-js", "-sd", store_dir, "-a", "127.0.0.1", "-p", str(nats_port)], {}))
        assert await asyncio.to_thread(wait_for_port, f"127.0.0.1:{nats_port}", timeout=15, proc=procs[-1])
        to_pg, to_nats = TcpProxy(*address(dsn)), TcpProxy("127.0.0.1", nats_port)
        for proxy in (to_pg, to_nats):
            await proxy.start(ns.host_ip)
        try:
            await _run(ns, dsn, nats_port, to_pg, to_nats, procs, tmp)
        finally:
            for proxy in (to_pg, to_nats):
                await proxy.close()


async def _run(
    ns: Namespace,
    dsn: str,
    nats_port: int,
    to_pg: TcpProxy,
    to_nats: TcpProxy,
    procs: list[subprocess.Popen[bytes]],
    tmp: Path,
) -> None:
    cluster = f"p{secrets.token_hex(5)}"
    b_addr, a_addr = f"{ns.host_ip}:{free_port()}", f"{ns.ns_ip}:{free_port()}"
    common = {"ASHAO_CLUSTER_NAME": cluster, "ASHAO_WORKER_PROBATION_SLOTS": str(JOBS)}
    procs.append(
        _spawn(
            [sys.executable, "-m", "core"],
            {
                **common,
                "ASHAO_GRPC_ADDR": b_addr,
                "ASHAO_DATA_DIR": str(tmp / "b"),
                "ASHAO_STORE": dsn,
                "ASHAO_BUS": f"nats://127.0.0.1:{nats_port}",
            },
            tmp / "b.log",
        )
    )
    assert await asyncio.to_thread(wait_for_port, b_addr, timeout=30, proc=procs[-1]), "core b did not start"
    procs.append(
        _spawn(
            ns.command(sys.executable, "-m", "core"),
            {
                **common,
                "ASHAO_GRPC_ADDR": a_addr,
                "ASHAO_DATA_DIR": str(tmp / "a"),
                "ASHAO_STORE": with_address(dsn, *to_pg.address()),
                "ASHAO_BUS": "nats://{}:{}".format(*to_nats.address()),
            },
            tmp / "a.log",
        )
    )
    assert await asyncio.to_thread(wait_for_port, a_addr, timeout=30, proc=procs[-1]), "core a did not start"
    b = _remote(b_addr, tmp / "b")
    a = _remote(a_addr, tmp / "b")
    a_id = await _core_id(dsn, a_addr)

    # a's worker takes every job sent to b (b has none); one answer has begun when the link goes
    user = await b.sign_in(credits=100 * TIERS[TIER].credit_cost)
    worker_a = await connect_worker(a, slots=JOBS)
    async with _beating(worker_a) as lock:
        ids = [await _send(b, user, f"q{i}") for i in range(JOBS)]
        assert {(await worker_a.assignment(timeout=20)).job_id for _ in ids} == set(ids)
        begun = ids[0]
        async with lock:
            await worker_a.tokens(begun, ["lost "])
        readers = {
            j: asyncio.ensure_future(collect(b, j, timeout=HOLD_LAPSE_S + 30, metadata=user)) for j in ids
        }
        await eventually_async(lambda: _streaming(dsn, begun), timeout=10)

    to_pg.cut()
    to_nats.cut()
    ns.cut()
    worker_a.cancel()
    try:
        # b takes a's jobs once a's holds lapse: the begun one ends in an error (its first token was
        # lost with a), the others run on b's worker
        served_b: set[str] = set()
        worker_b = await connect_worker(b, slots=JOBS)
        async with _beating(worker_b) as lock:
            serving = asyncio.ensure_future(_serve(worker_b, lock, ["fine"], served_b))
            for j in ids:
                events = await asyncio.wait_for(readers[j], HOLD_LAPSE_S + 30)
                if j == begun:
                    assert events[-1][1:] == ("error", "CORE_LOST"), events
                else:
                    assert events == [(1, "token", "fine"), (2, "done", 1)], events
            assert served_b == set(ids) - {begun}
            assert not await _live(dsn, a_id)
            worker_b.cancel()
            await asyncio.gather(serving, return_exceptions=True)
    finally:
        ns.heal()
        to_pg.restore()
        to_nats.restore()

    # a comes back: live again, it takes and runs a job for its own worker, and settles nothing twice
    await eventually_async(lambda: _live(dsn, a_id), timeout=30)
    await a.channel.close()
    a = _remote(a_addr, tmp / "b")

    async def answers() -> bool:  # (the first call may meet the connection the partition broke)
        try:
            await a.network.GetStats(network_pb2.GetStatsRequest(), timeout=5)
        except grpc.aio.AioRpcError:
            return False
        return True

    await eventually_async(answers, timeout=30)
    worker_a2 = await connect_worker(a, slots=2)
    served_a: set[str] = set()
    async with _beating(worker_a2) as lock:
        serving = asyncio.ensure_future(_serve(worker_a2, lock, ["back"], served_a))
        job = await _send(a, user, "again")
        assert await collect(a, job, timeout=30, metadata=user) == [(1, "token", "back"), (2, "done", 1)]
        assert served_a == {job}  # (none of the jobs b took over came back to a's worker)
        assert await collect(b, job, metadata=user) == [(1, "token", "back"), (2, "done", 1)]
        worker_a2.cancel()
        await asyncio.gather(serving, return_exceptions=True)
    for core in (a, b):
        await core.channel.close()
    for proc in procs[-2:]:
        await asyncio.to_thread(_stop, proc)

    await _copy_books(dsn, tmp / "books.db")
    books = read_books(tmp / "books.db")
    assert not books.problems, books.problems
    assert books.by_state == {"done": JOBS, "failed": 1}
    assert (books.paid, books.refunded, books.escrow) == (JOBS, 1, 0)


async def _send(core: Core, user: Any, content: str) -> str:
    request = chat_pb2.SendMessageRequest(tier=TIER, content=content)
    return str((await core.chat.SendMessage(request, metadata=user)).job_id)


async def _core_id(dsn: str, addr: str) -> str:
    """The id of the core that recorded itself at ``addr`` (waiting for its first heartbeat)."""
    found: list[str] = []

    async def recorded() -> bool:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            core_id = await conn.fetchval("SELECT id FROM cores WHERE address = $1", addr)
        finally:
            await conn.close()
        if core_id:
            found.append(str(core_id))
        return bool(core_id)

    await eventually_async(recorded, timeout=20)
    return found[0]


async def _live(dsn: str, core_id: str) -> bool:
    """Whether ``core_id`` heartbeated within the last 3 s (it does every second here)."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return bool(
            await conn.fetchval(
                "SELECT last_seen >= (extract(epoch from now()) * 1000)::bigint - 3000 FROM cores WHERE id = $1",
                core_id,
            )
        )
    finally:
        await conn.close()


async def _streaming(dsn: str, job_id: str) -> bool:
    """Whether the store holds ``job_id`` as streaming (its answer has begun)."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return bool(await conn.fetchval("SELECT state = 'streaming' FROM jobs WHERE id = $1", job_id))
    finally:
        await conn.close()

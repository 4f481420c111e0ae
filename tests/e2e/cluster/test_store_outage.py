"""PostgreSQL out of reach for 10 s under load (a proxy in front of the shared server cuts every
connection and refuses new ones; the server itself is never touched): sends are refused with 503
``{error}`` meanwhile (never a 200 whose job is lost), the service recovers by itself, nothing
acknowledged is lost, and the cores' memory stays flat while the store is down."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.cluster.conftest import StartCluster
from tests.helpers.books import check_books
from tests.helpers.clusternet import synthetic
from tests.helpers.faultcase import summary
from tests.helpers.load import Client, Load, Stream, wait_workers
from tests.helpers.pgbooks import copy_books, settlements_per_job
from tests.helpers.postgres import address, with_address
from tests.helpers.tcpproxy import TcpProxy
from tests.helpers.wait import eventually

pytestmark = [pytest.mark.faults, pytest.mark.timeout(150)]

OUTAGE_S = 10.0
"""How long the store is out of reach (the fault's length, not a wait)."""
RSS_GROWTH_BOUND = 50 * 1024 * 1024
"""What a core's resident memory may grow by while the store is down (generous: it must not grow with
the sends it refuses)."""


def rss(pid: int) -> int:
    """Resident memory of process ``pid``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise LookupError(pid)


async def test_store_out_of_reach_for_10_s(
    start_cluster: StartCluster, postgres_dsn: str, tmp_path: Path
) -> None:
    proxy = TcpProxy(*address(postgres_dsn))
    await proxy.start()
    try:
        net = await start_cluster(
            cores=2,
            facades=1,
            workers=2,
            worker_args=synthetic(slots=32, tokens=20, rate=10.0),
            dsn=with_address(postgres_dsn, *proxy.address()),
        )
        pids = [net.pid("core-1"), net.pid("core-2")]
        async with Load(net.urls[0]) as load:
            await wait_workers(load.http, 2)
            load.start([Client("free") for _ in range(40)], stagger_s=0.02)
            await eventually(lambda: len(load.live) >= 20, timeout=30)
            loop = asyncio.get_running_loop()
            before = {pid: rss(pid) for pid in pids}
            peak = dict(before)
            refused_before = len(load.refused_at)
            probes: Counter[int] = Counter()
            probed: list[str] = []
            proxy.cut()
            cut_at = loop.time()
            while loop.time() - cut_at < OUTAGE_S:  # the outage, its length fixed; memory sampled meanwhile
                # a send of its own, not retried (the clients above may all be following answers now)
                r = await load.http.post("/api/chat/send", json={"tier": "free", "content": "in the outage"})
                probes[r.status_code] += 1
                body = r.json()
                if r.status_code == 200:  # acknowledged: its job must end like any other
                    probed.append(body["jobId"])
                    load.streams[body["jobId"]] = Stream(body["jobId"], "free", "")
                else:
                    assert r.status_code == 503 and isinstance(body.get("error"), str) and body["error"], (
                        r.status_code,
                        body,
                    )
                for pid in pids:
                    peak[pid] = max(peak[pid], rss(pid))
                await asyncio.sleep(0.25)
            restored_at = loop.time()
            proxy.restore()
            refused = [t for t in load.refused_at[refused_before:] if t <= restored_at + 0.5]
            mark = load.mark()
            await asyncio.gather(*(load.follow(load.streams[j]) for j in probed))
            await eventually(lambda: load.done_since(mark) >= 20, timeout=45)
            recovered_s = loop.time() - restored_at
            load.stop()
            await load.finish(timeout=60)
        await asyncio.to_thread(net.stop)  # (the proxy runs in this loop: the cores stop through it)
    finally:
        await proxy.close()
    db = await copy_books(postgres_dsn, tmp_path / "books.db")
    books = check_books(db, load.streams, given_up=load.unacknowledged)
    charged = await settlements_per_job(postgres_dsn)
    growth = {pid: peak[pid] - before[pid] for pid in pids}
    print(summary("store outage", load, books))
    print(
        f"[store outage] {OUTAGE_S:.0f} s: sends of the test meanwhile {dict(probes)}, of the clients"
        f" {len(refused)} refused with 503 (retried); 20 answers done"
        f" {recovered_s:.1f} s after the store was back; core RSS growth during the outage"
        f" {[round(g / 2**20, 1) for g in growth.values()]} MiB"
    )
    assert not load.problems, load.problems[:20]  # every refusal a typed {error}; every stream whole
    assert load.unacknowledged == 0  # each refused send got through, retried, once the store was back
    assert probes[503] >= 1, probes  # refused while the store was out of reach (each a typed {error})
    assert max(charged.values(), default=0) <= 1
    assert all(g < RSS_GROWTH_BOUND for g in growth.values()), growth

"""One core of two SIGKILLed while ~200 answers stream: its workers go over to the other core, the jobs it
held are taken over once their holds on the shared queue lapse (run again, or ended with an error if
their answer had begun: never spliced), no acknowledged send is lost, nothing is charged twice, the
books balance."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.cluster.conftest import StartCluster
from tests.helpers.books import check_books
from tests.helpers.clusternet import synthetic
from tests.helpers.faultcase import grant, mixed_clients, query, signed_in, summary
from tests.helpers.load import Load, wait_workers
from tests.helpers.pgbooks import copy_books, settlements_per_job
from tests.helpers.wait import eventually, eventually_async

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

CLIENTS = 100
"""Clients per facade (two facades): about 200 answers streaming at once."""
ENV = {
    "ASHAO_CLUSTER_ACK_WAIT_S": "4",  # a dead core's jobs go to the other after 4 s
    "ASHAO_WORKER_PROBATION_SLOTS": "50",
}


async def test_core_sigkill_while_200_jobs_stream(start_cluster: StartCluster, tmp_path: Path) -> None:
    net = await start_cluster(
        cores=2, facades=2, workers=4, worker_args=synthetic(slots=50, tokens=40, rate=10.0), env=ENV
    )
    a, b = net.urls
    async with Load(a, failover=[b]) as la, Load(b, failover=[a]) as lb:
        await wait_workers(la.http, 4)
        on_a = await net.workers_on(0)
        assert len(on_a) == 2, on_a  # w1 and w3 prefer core-1
        users = await signed_in(la, 8)
        for u in users:
            await grant(net.net, la, u, 100_000)
        la.start(mixed_clients(users[:4], free=70, priced=30), stagger_s=0.01)
        lb.start(mixed_clients(users[4:], free=70, priced=30), stagger_s=0.01)
        # (how many answers stream at once depends on the machine: 200 clients, the kill once 200 sends
        # were acknowledged and 40 answers are streaming)
        await eventually(
            lambda: len(la.streams) + len(lb.streams) >= 200 and len(la.live) + len(lb.live) >= 40, timeout=40
        )
        cut = la.live | lb.live  # answers streaming at the kill
        pending = {j for j, s in [*la.streams.items(), *lb.streams.items()] if s.terminal is None}
        loop = asyncio.get_running_loop()
        struck = loop.time()
        await asyncio.to_thread(net.kill, "core-1")

        async def moved() -> bool:
            return on_a <= await net.workers_on(1)

        await eventually_async(moved, timeout=20)
        reconnected_s = loop.time() - struck
        marks = la.mark(), lb.mark()
        await eventually(lambda: la.done_since(marks[0]) + lb.done_since(marks[1]) >= 100, timeout=40)
        la.stop()
        lb.stop()
        await asyncio.gather(la.finish(timeout=40), lb.finish(timeout=40))
    net.stop()
    told = {**la.streams, **lb.streams}
    given_up = la.unacknowledged + lb.unacknowledged
    db = await copy_books(net.dsn, tmp_path / "books.db")
    books = check_books(db, told, given_up=given_up)  # balanced; every acknowledged job kept its promise
    charged = await settlements_per_job(net.dsn)
    tries = {str(j): int(str(n)) for j, n in query(db, "SELECT id, attempts FROM jobs")}
    ends = [told[j].terminal for j in pending]
    print(summary("core-1 SIGKILL", la, books))
    print(summary("core-1 SIGKILL", lb, books))
    print(
        f"[core-1 SIGKILL] workers on the other core after {reconnected_s:.2f} s; at the kill {len(pending)}"
        f" acknowledged jobs not ended ({len(cut)} streaming), since: done {sum(1 for t in ends if t and t['type'] == 'done')}"
        f" error {sum(1 for t in ends if t and t['type'] == 'error')}; run again {sum(tries[j] > 1 for j in pending)};"
        f" facade failovers {la.failovers + lb.failovers}"
    )
    assert not la.problems and not lb.problems, (la.problems + lb.problems)[:20]
    assert given_up == 0
    assert all(t is not None for t in ends)
    assert max(charged.values(), default=0) <= 1
    assert books.paid + books.refunded == books.priced

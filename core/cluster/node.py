"""This core's place among several: its NATS connection, the shared job queue, the record of live
cores (each core's address, so others can reach it), job locations, and control messages.

NATS subjects (``ashao`` being the cluster's name): ``ashao.jobs.<tier>`` (the JetStream queue),
``ashao.loc`` (a core took a job: ``"<job_id> <core_id>"``), ``ashao.control`` (JSON: cancel a job, let
a worker go, wherever it is).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import nats
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from core.cluster.mirrors import RemoteLogs
from core.cluster.queue import JetStreamQueue
from core.ids import new_id
from core.store import Store, now_ms

log = logging.getLogger("ashao.core.cluster")

CORE_TTL_MS = 10_000
"""A core not seen for this long is not a live core (its jobs are taken over as its holds lapse)."""


class Node:
    """This core, as a member of the cluster."""

    def __init__(
        self,
        *,
        url: str,
        store: Store,
        address: str,
        peer_metadata: tuple[tuple[str, str], ...],
        cluster: str = "ashao",
        ack_wait_s: float = 30.0,
    ) -> None:
        self.id = new_id("core")
        self._locations = f"{cluster}.loc"
        self._control_subject = f"{cluster}.control"
        self.address = address
        """The gRPC address other cores (and facades) reach this core at."""
        self._url = url
        self._store = store
        self.nc: Client | None = None
        self.queue = JetStreamQueue(cluster=cluster, ack_wait_s=ack_wait_s)
        self.remote = RemoteLogs(address=self.peer_address, metadata=peer_metadata, own_id=self.id)
        self.on_cancel: Callable[[str, str], None] = lambda job_id, reason: None
        self.on_revoke: Callable[[str], None] = lambda worker_id: None

    async def open(self) -> None:
        """Connect to NATS (reconnecting by itself for ever), set up the queue, listen for locations
        and control messages, and record this core as live."""
        self.nc = await nats.connect(
            self._url, name=f"ashao-{self.id}", max_reconnect_attempts=-1, reconnect_time_wait=0.5
        )
        await self.queue.open(self.nc)
        await self.nc.subscribe(self._locations, cb=self._located)
        await self.nc.subscribe(self._control_subject, cb=self._control)
        await self.heartbeat()

    async def close(self) -> None:
        """Leave: stop following others, forget this core's record, close NATS."""
        await self.remote.close()
        await self.queue.drain()
        try:
            await self._store.write([("DELETE FROM cores WHERE id = ?", (self.id,))])
        except Exception as exc:
            log.warning("could not remove this core's record: %s", exc)
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.flush(timeout=2)
            await self.nc.close()

    async def heartbeat(self, stats: str = "") -> None:
        """Record this core as live, with its figures (run it every few seconds)."""
        now = now_ms()
        await self._store.write(
            [
                (
                    "INSERT INTO cores (id, address, started_at, last_seen, stats) VALUES (?,?,?,?,?)"
                    " ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen, address = excluded.address,"
                    " stats = excluded.stats",
                    (self.id, self.address, now, now, stats),
                )
            ]
        )

    async def others_reports(self) -> list[str]:
        """What the other live cores last reported with their heartbeats."""
        rows = await self._store.fetchall(
            "SELECT stats FROM cores WHERE last_seen >= ? AND id <> ?", (now_ms() - CORE_TTL_MS, self.id)
        )
        return [str(r[0]) for r in rows]

    async def peer_address(self, core_id: str) -> str | None:
        """The address of a live core."""
        row = await self._store.fetchone("SELECT address, last_seen FROM cores WHERE id = ?", (core_id,))
        if row is None or int(row[1]) < now_ms() - CORE_TTL_MS:
            return None
        return str(row[0])

    async def leading(self) -> bool:
        """Whether this core is the oldest live one (it runs the cluster's periodic chores: treasury
        snapshots and staking rewards, which the store also refuses to repeat)."""
        cores = await self.live_cores()
        return bool(cores) and cores[0][0] == self.id

    async def live(self, core_id: str) -> bool:
        """Whether ``core_id`` is a live core."""
        return await self.peer_address(core_id) is not None

    async def live_cores(self) -> list[tuple[str, str]]:
        """(id, address) of every live core."""
        rows = await self._store.fetchall(
            "SELECT id, address FROM cores WHERE last_seen >= ? ORDER BY started_at",
            (now_ms() - CORE_TTL_MS,),
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    # -- messages ---------------------------------------------------------------------------------

    async def announce(self, job_id: str) -> None:
        """This core took ``job_id``: cores following it go there."""
        if self.nc is not None:
            await self.nc.publish(self._locations, f"{job_id} {self.id}".encode())

    async def _located(self, msg: Msg) -> None:
        job_id, _, core_id = msg.data.decode().partition(" ")
        if core_id != self.id:
            self.remote.located(job_id, core_id)

    async def cancel(self, job_id: str, reason: str) -> None:
        """Ask whichever core holds ``job_id`` to cancel it."""
        await self._send({"kind": "cancel", "job_id": job_id, "reason": reason})

    async def revoke_worker(self, worker_id: str) -> None:
        """Ask every core to let ``worker_id`` go."""
        await self._send({"kind": "revoke", "worker_id": worker_id})

    async def _send(self, message: dict[str, str]) -> None:
        if self.nc is not None:
            await self.nc.publish(self._control_subject, orjson.dumps(message))

    async def _control(self, msg: Msg) -> None:
        try:
            m = orjson.loads(msg.data)
            if m.get("kind") == "cancel":
                self.on_cancel(str(m["job_id"]), str(m.get("reason", "cancelled")))
            elif m.get("kind") == "revoke":
                self.on_revoke(str(m["worker_id"]))
        except Exception:
            log.exception("bad control message %r", msg.data[:200])

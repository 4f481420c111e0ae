"""Following a job another core runs: its event log mirrored here, fed by that core.

A core that is asked to stream a job another core holds opens (once per peer) a ``Subscribe`` stream
to that core — the same multiplexed protocol the facade uses — and mirrors each watched job's log: the
tokens and the end that core sends are appended to a local ``JobLog``, which every local reader
follows with the usual cursors. One hop more than a local job, one gRPC message per batch of events.

Where a job runs is its location record (``jobs.core_id``, and a NATS message when a core takes a job).
A job not taken yet is waited for; when its core stops (the peer stream breaks) the mirror waits for
the core that takes it next. If that core does not have the tokens this mirror already shows (they
were lost with the stopped core), the mirror ends with an error rather than splice two answers.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import grpc

from ashao.v1 import chat_pb2, chat_pb2_grpc, common_pb2
from core.streams.bus import LocalBus
from core.streams.log import JobLog, Terminal

log = logging.getLogger("ashao.core.cluster")

LOST = "the core running this job stopped mid-answer; the answer was lost (send it again)"
Address = Callable[[str], Awaitable[str | None]]
"""The gRPC address of a core, by id (None if it is not a live core)."""

_TERMINAL = frozenset(
    {
        common_pb2.JOB_STATE_DONE,
        common_pb2.JOB_STATE_FAILED,
        common_pb2.JOB_STATE_CANCELLED,
        common_pb2.JOB_STATE_EXPIRED,
    }
)


@dataclass(slots=True)
class _Mirror:
    log: JobLog
    core_id: str = ""
    sub_id: int = 0


@dataclass(slots=True)
class _Peer:
    core_id: str
    outbox: asyncio.Queue[chat_pb2.SubscribeRequest | None] = field(default_factory=asyncio.Queue)
    subs: dict[int, _Mirror] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None


PEER_RETRY_S = 2.0
"""After a stream to a core breaks, mirrors wait this long before following a job to that core again (a
core that died looks live until its record lapses: without the pause every location of its jobs would
open, and fail, a stream of its own)."""
RECENT_LOCATIONS = 10_000
"""Locations of jobs no reader here follows yet, kept for one that comes soon after (the oldest go)."""


class RemoteLogs:
    """The mirrors of this core, and its streams to the cores they follow."""

    def __init__(
        self,
        *,
        address: Address,
        metadata: tuple[tuple[str, str], ...],
        credentials: grpc.ChannelCredentials | None = None,
        max_mirrors: int = 100_000,
        own_id: str = "",
    ) -> None:
        """``credentials``: TLS to reach other cores with (the cores serve TLS); plaintext if None.
        ``own_id``: this core's id (a job this core takes is not followed over a stream to itself)."""
        self._own = own_id
        self._address = address
        self.credentials = credentials
        self.metadata = metadata
        self._max = max_mirrors
        self._mirrors: dict[str, _Mirror] = {}
        self._peers: dict[str, _Peer] = {}
        self._ids = itertools.count(1)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._recent: OrderedDict[str, str] = OrderedDict()
        """Where jobs went that no reader here followed yet (a reader often asks just after)."""
        self._broken: dict[str, float] = {}
        """Cores whose stream broke, and until when (monotonic) no mirror follows a job there."""

    def __len__(self) -> int:
        return len(self._mirrors)

    def find(self, job_id: str) -> JobLog | None:
        """The mirror of ``job_id``, if this core follows it."""
        m = self._mirrors.get(job_id)
        return m.log if m is not None else None

    def follow(self, job_id: str, core_id: str) -> JobLog:
        """Mirror ``job_id`` (run by ``core_id``, or not taken yet if ''); the same mirror for every
        local reader."""
        m = self._mirrors.get(job_id)
        if m is not None:
            return m.log
        if len(self._mirrors) >= self._max:
            self._forget_idle()
        m = self._mirrors[job_id] = _Mirror(JobLog(job_id))
        core_id = self._recent.pop(job_id, "") or core_id
        if core_id:
            self.located(job_id, core_id)
        return m.log

    def claim(self, job_id: str) -> JobLog | None:
        """This core takes ``job_id``: the mirror its readers here wait on, if it has no event yet, to be
        the job's own log from now on (it stops being a mirror)."""
        m = self._mirrors.get(job_id)
        if m is None or m.log.tokens or m.log.terminal is not None:
            return None
        self._unwatch(m)
        del self._mirrors[job_id]
        return m.log

    def waiting(self) -> list[str]:
        """Jobs mirrored here that no core is known to hold."""
        return [j for j, m in self._mirrors.items() if not m.core_id]

    def ended(
        self, job_id: str, terminal: Terminal, tokens: list[str] | None = None, answer: int = 0
    ) -> None:
        """The store says ``job_id`` ended (no core told this mirror): end it so. A ``done`` job's readers
        get the stored answer's tokens they have not seen first (``tokens``, of attempt ``answer``);
        readers who saw tokens of another answer are told it was lost rather than given this one."""
        m = self._mirrors.get(job_id)
        if m is None:
            return
        if terminal.kind == "done" and tokens is not None:
            have = m.log.tokens
            if have and (tokens[: len(have)] != have or (m.log.answer and answer and m.log.answer != answer)):
                self._end(m, Terminal("error", message=LOST, reason="CORE_LOST"))
                return
            if len(tokens) > len(have):
                if not m.log.answer:
                    m.log.answer = answer
                m.log.append(tokens[len(have) :])
        self._end(m, terminal)

    def located(self, job_id: str, core_id: str) -> None:
        """``core_id`` holds ``job_id`` now: follow it there."""
        if core_id == self._own:
            return  # (this core runs it: its readers here were given its log when it took it)
        m = self._mirrors.get(job_id)
        if m is None:
            self._recent[job_id] = core_id
            self._recent.move_to_end(job_id)
            if len(self._recent) > RECENT_LOCATIONS:
                self._recent.popitem(last=False)
            return
        if m.log.terminal is not None or m.core_id == core_id:
            return
        if core_id in self._broken:
            if time.monotonic() < self._broken[core_id]:
                return  # (the mirror keeps waiting: the next location, or the store, says where it went)
            del self._broken[core_id]
        if m.core_id:
            self._unwatch(m)
        m.core_id = core_id
        peer = self._peers.get(core_id)
        if peer is None:
            peer = self._peers[core_id] = _Peer(core_id)
            peer.task = asyncio.create_task(self._run(peer), name=f"ashao-peer-{core_id}")
        m.sub_id = next(self._ids)
        peer.subs[m.sub_id] = m
        peer.outbox.put_nowait(self._watch(m))

    def _watch(self, m: _Mirror) -> chat_pb2.SubscribeRequest:
        return chat_pb2.SubscribeRequest(
            watch=chat_pb2.Watch(sub_id=m.sub_id, job_id=m.log.job_id, after_seq=len(m.log.tokens))
        )

    def _unwatch(self, m: _Mirror) -> None:
        peer = self._peers.get(m.core_id)
        if peer is not None and peer.subs.pop(m.sub_id, None) is not None:
            peer.outbox.put_nowait(chat_pb2.SubscribeRequest(unwatch=chat_pb2.Unwatch(sub_id=m.sub_id)))

    def _end(self, m: _Mirror, terminal: Terminal) -> None:
        self._unwatch(m)
        self._mirrors.pop(m.log.job_id, None)
        m.log.finish(terminal)

    def _forget_idle(self) -> None:
        """Past the bound: drop mirrors nobody reads."""
        for job_id, m in list(self._mirrors.items()):
            if m.log.listeners == 0:
                self._unwatch(m)
                del self._mirrors[job_id]

    async def _requests(self, peer: _Peer) -> AsyncIterator[chat_pb2.SubscribeRequest]:
        while (req := await peer.outbox.get()) is not None:
            yield req

    async def _run(self, peer: _Peer) -> None:
        """One Subscribe stream to a peer core, kept while it has mirrors; when it breaks, its mirrors
        wait for the core that takes their jobs next (its location message)."""
        call: grpc.aio.StreamStreamCall[chat_pb2.SubscribeRequest, chat_pb2.SubscribeResponse] | None = None
        try:
            address = await self._address(peer.core_id)
            if address is None:
                raise ConnectionError(f"core {peer.core_id} is not a live core")
            channel = self._channels.get(address)
            if channel is None:
                channel = self._channels[address] = (
                    grpc.aio.secure_channel(address, self.credentials)
                    if self.credentials is not None
                    else grpc.aio.insecure_channel(address)
                )
            call = chat_pb2_grpc.ChatServiceStub(channel).Subscribe(
                self._requests(peer), metadata=self.metadata
            )
            async for response in call:
                self._dispatch(peer, response)
        except (grpc.aio.AioRpcError, ConnectionError) as exc:
            log.warning(
                "stream to core %s ended (%s); its jobs are followed where they go next", peer.core_id, exc
            )
        finally:
            if call is not None:
                call.cancel()  # (and its task reading the requests with it: none is left pending)
            peer.outbox.put_nowait(None)
            if self._peers.get(peer.core_id) is peer:
                del self._peers[peer.core_id]
            if len(self._broken) >= RECENT_LOCATIONS:
                self._broken.clear()
            self._broken[peer.core_id] = time.monotonic() + PEER_RETRY_S
            for m in peer.subs.values():
                m.core_id = ""  # waiting for the next location

    def _dispatch(self, peer: _Peer, response: chat_pb2.SubscribeResponse) -> None:
        for ev in response.events:
            m = peer.subs.get(ev.sub_id)
            if m is None:
                continue
            kind = ev.WhichOneof("kind")
            if kind == "chunk":
                have = len(m.log.tokens)
                skip = have + 1 - ev.seq  # already mirrored before a re-watch
                tokens = list(ev.chunk.tokens)[max(0, skip) :]
                if tokens:
                    if not m.log.answer:
                        m.log.answer = ev.answer
                    m.log.append(tokens)
            elif kind == "done":
                self._end(m, Terminal("done", tokens=ev.done.tokens))
            elif kind == "error":
                self._end(m, Terminal("error", message=ev.error.message, reason=ev.error.reason))
            elif kind == "accepted":
                a = ev.accepted
                other = bool(m.log.tokens and m.log.answer and a.answer and a.answer != m.log.answer)
                if other or (a.tokens < len(m.log.tokens) and a.state not in _TERMINAL):
                    # The core that took the job over does not have what readers here already saw.
                    self._end(m, Terminal("error", message=LOST, reason="CORE_LOST"))
            elif kind == "rejected":
                self._end(m, Terminal("error", message=ev.rejected.message, reason=ev.rejected.code))

    async def close(self) -> None:
        """End every peer stream and channel."""
        for peer in list(self._peers.values()):
            peer.outbox.put_nowait(None)
            if peer.task is not None:
                peer.task.cancel()
        await asyncio.gather(
            *(p.task for p in self._peers.values() if p.task is not None), return_exceptions=True
        )
        for channel in self._channels.values():
            await channel.close()


class ClusterBus(LocalBus):
    """The token bus of a core among several: its own jobs' logs, and mirrors of the others'."""

    def __init__(self, *, finished_tokens_kept: int, remote: RemoteLogs) -> None:
        super().__init__(finished_tokens_kept=finished_tokens_kept)
        self.remote = remote

    def find(self, job_id: str) -> JobLog | None:
        """A local log, a mirror, or a cached finished one."""
        return super().find(job_id) or self.remote.find(job_id)

    def retire(self, log: JobLog) -> None:
        """A log of this core's leaves; once the job has ended, readers here who followed it on the core
        that ran it before this one (their mirror shows part of that core's answer) are told it is lost."""
        super().retire(log)
        if self.remote.find(log.job_id) is None:
            return

        def ended() -> None:
            if log.terminal is not None:
                log.unlisten(ended)
                lost = Terminal("error", message=LOST, reason="CORE_LOST")
                self.remote.ended(log.job_id, log.terminal if log.terminal.kind == "error" else lost)

        log.listen(ended)  # (a log retires just before its end is told; one handed back never ends here)
        ended()

    def follow(self, job_id: str, core_id: str) -> JobLog | None:
        """The mirror of a job another core runs (or will)."""
        return self.remote.follow(job_id, core_id)

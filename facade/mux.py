"""One multiplexed ``Subscribe`` stream to the core carries the events of every SSE client here.

A gRPC message costs the same whatever it carries, so one stream for all the jobs this process's
browsers follow — not one server-streaming call per browser — is what keeps the token path cheap.
Each SSE client is a ``Subscription``: the reader of the stream turns the core's events into SSE
frames once (bytes, built with orjson) and appends them to that subscription's buffer; the client's
response writes everything buffered in one write when it wakes (straight to the socket, where it
can: ``facade.frames``), so a client gets one write per message from the core, whose pace follows
the load.

Buffers are bounded: a client that falls ``max_buffer_bytes`` behind is cut off with an error event
(it may resume with ``Last-Event-ID``), so a slow reader never grows memory or slows anyone else.
If the stream to the core breaks (the core restarts), the live subscriptions are watched again on
the next stream from the last event each delivered, so their clients continue seamlessly.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator

import grpc

from ashao.v1 import chat_pb2, chat_pb2_grpc, common_pb2
from ashao_common.supervise import Supervisor
from facade.events import ANSWER_LOST, NETWORK, Framer
from facade.frames import Coalescer, FrameBuffer

log = logging.getLogger("ashao.facade.mux")

KEEPALIVE_FRAME = b": keep-alive\n\n"


_TERMINAL_STATES = frozenset(
    {
        common_pb2.JOB_STATE_DONE,
        common_pb2.JOB_STATE_FAILED,
        common_pb2.JOB_STATE_CANCELLED,
        common_pb2.JOB_STATE_EXPIRED,
    }
)


def _terminal(state: int) -> bool:
    return state in _TERMINAL_STATES


class WatchRefused(Exception):
    """The core refused a watch (or could not be asked); ``code`` is the gRPC status code name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Subscription(FrameBuffer):
    """One SSE client's view of one job: a buffer of SSE frames not yet written to it."""

    __slots__ = (
        "answer",
        "client_ip",
        "credential",
        "cut",
        "finished",
        "framer",
        "job_id",
        "last_seq",
        "max_bytes",
        "ready",
        "renumber",
        "sub_id",
    )

    def __init__(
        self,
        sub_id: int,
        job_id: str,
        after_seq: int,
        credential: str,
        client_ip: str,
        coalescer: Coalescer,
        framer: Framer = NETWORK,
    ) -> None:
        super().__init__(coalescer)
        self.framer = framer
        """What this client's events look like."""
        self.sub_id = sub_id
        self.job_id = job_id
        self.credential = credential
        self.client_ip = client_ip
        self.last_seq = after_seq
        """The id of the last event buffered; a re-watch resumes after it."""
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Resolves when the core accepted the watch; fails with WatchRefused."""
        self.finished = False
        """The job had ended and this client already had its every event, the terminal one included:
        there is nothing to stream (an SSE client is told not to reconnect)."""
        self.answer = 0
        """The attempt whose answer the tokens this client has are (0 before any)."""
        self.renumber = False
        """The job was re-watched after a core restart lost tokens this client saw, and has ended: its
        end is sent after the client's last event, whatever id the core gives it."""
        self.cut = False
        """Cut off for falling too far behind (its buffer ends with that error)."""
        self.max_bytes = 0
        """How far behind it may fall before it is cut off (0: the mux's bound)."""


class Mux:
    """The Subscribe stream and its subscriptions. ``start()`` it, ``shutdown()`` it."""

    def __init__(
        self,
        stub: chat_pb2_grpc.ChatServiceAsyncStub,
        *,
        max_buffer_bytes: int,
        keepalive_s: float,
        coalesce_s: float = 0.0,
        reconnect_grace_s: float = 30.0,
        connect_wait_s: float = 3.0,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._stub = stub
        self._metadata = metadata
        self._coalescer = Coalescer(coalesce_s)

        self._max_buffer = max_buffer_bytes
        self._keepalive_s = keepalive_s
        self._grace_s = reconnect_grace_s
        self._connect_wait_s = connect_wait_s
        self._subs: dict[int, Subscription] = {}
        self._ids = itertools.count(1)
        self._outbox: asyncio.Queue[chat_pb2.SubscribeRequest | None] = asyncio.Queue()
        self._up = asyncio.Event()
        self._down: asyncio.Future[None] | None = None
        """Resolves when the stream that is up now goes down."""
        self._closing = False
        self._down_since = time.monotonic()
        self._loops = Supervisor("ashao-facade-mux", {"subscribe": self._run, "keepalive": self._tick})
        self.cut_off = 0
        """Subscribers cut off for falling too far behind."""

    def __len__(self) -> int:
        return len(self._subs)

    @property
    def direct(self) -> int:
        """Subscriptions whose frames are written straight to the client's socket now."""
        return sum(1 for sub in self._subs.values() if sub.direct is not None)

    @property
    def connected(self) -> bool:
        """Whether the subscription stream to the core is up."""
        return self._up.is_set()

    @property
    def restarts(self) -> int:
        """Times a loop of the mux was restarted after an unexpected failure."""
        return self._loops.restarts

    def start(self) -> None:
        """Open the stream (and keep it open) and start the keep-alive clock, both supervised."""
        self._loops.start()

    def end_all(self) -> None:
        """End every subscription's stream now (their clients reconnect with Last-Event-ID)."""
        for sub in list(self._subs.values()):
            if not sub.ready.done():
                sub.ready.set_exception(WatchRefused("UNAVAILABLE", "the facade is stopping"))
            sub.end()
        self._subs.clear()

    async def shutdown(self) -> None:
        """Stop accepting watches, end every subscription (their clients write what is buffered), then
        stop the loops. Idempotent."""
        self._closing = True
        self.end_all()
        await self._loops.stop()
        self._coalescer.close()

    # -- subscriptions ----------------------------------------------------------------------

    async def watch(
        self,
        job_id: str,
        after_seq: int,
        *,
        credential: str,
        client_ip: str,
        wait_s: float,
        framer: Framer = NETWORK,
    ) -> Subscription:
        """Follow ``job_id`` after ``after_seq`` for the end user behind ``credential``.

        Returns once the core accepted, so the caller can still answer with a real status; raises
        WatchRefused (NOT_FOUND for an unknown or foreign job, UNAVAILABLE if the core is away: after
        at most ``connect_wait_s`` without a stream to the core, as a send, not the whole ``wait_s``).
        """
        sub = self.open(job_id, after_seq, credential=credential, client_ip=client_ip, framer=framer)
        try:
            await self.accepted(sub, wait_s)
        except BaseException:
            self.release(sub)
            raise
        return sub

    def open(
        self, job_id: str, after_seq: int, *, credential: str, client_ip: str, framer: Framer = NETWORK
    ) -> Subscription:
        """Start following ``job_id`` without waiting for the core's answer (``accepted`` waits)."""
        if self._closing:
            raise WatchRefused("UNAVAILABLE", "the facade is stopping")
        sub = Subscription(next(self._ids), job_id, after_seq, credential, client_ip, self._coalescer, framer)
        request = self._watch_request(sub)  # a field that does not fit fails here, before it is kept
        self._subs[sub.sub_id] = sub
        self._outbox.put_nowait(request)
        return sub

    async def accepted(self, sub: Subscription, wait_s: float) -> None:
        """Wait for the core's answer to ``sub``'s watch: ``wait_s`` in all, and no more than
        ``connect_wait_s`` at a time without a stream (a watch in flight when the stream breaks is
        sent again on the next one)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while not sub.ready.done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise WatchRefused("UNAVAILABLE", "the coordinator did not answer in time")
            down = self._down
            if down is None or down.done():  # no stream now: wait a little for one
                try:
                    async with asyncio.timeout(min(remaining, self._connect_wait_s)):
                        await self._up.wait()
                except TimeoutError:
                    raise WatchRefused("UNAVAILABLE", "the coordinator is unreachable") from None
                continue
            await asyncio.wait([sub.ready, down], timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        sub.ready.result()  # raises the WatchRefused of a rejected watch

    def release(self, sub: Subscription) -> None:
        """The client is gone (or the stream ended): stop following. Safe to call twice."""
        sub.end()
        if self._subs.pop(sub.sub_id, None) is not None:
            # Into the current stream's outbox: a later stream never watched it (the core ignores an
            # unwatch it does not know).
            self._outbox.put_nowait(chat_pb2.SubscribeRequest(unwatch=chat_pb2.Unwatch(sub_id=sub.sub_id)))
        if not sub.ready.done():
            sub.ready.cancel()

    @staticmethod
    def _watch_request(sub: Subscription) -> chat_pb2.SubscribeRequest:
        return chat_pb2.SubscribeRequest(
            watch=chat_pb2.Watch(
                sub_id=sub.sub_id,
                job_id=sub.job_id,
                after_seq=sub.last_seq,
                credential=sub.credential,
                client_ip=sub.client_ip,
            )
        )

    # -- the stream -------------------------------------------------------------------------

    @staticmethod
    async def _requests(
        outbox: asyncio.Queue[chat_pb2.SubscribeRequest | None],
    ) -> AsyncIterator[chat_pb2.SubscribeRequest]:
        while (request := await outbox.get()) is not None:  # None: that stream is over
            yield request

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            # A fresh outbox per stream: what was queued for a broken stream is re-derived below.
            outbox: asyncio.Queue[chat_pb2.SubscribeRequest | None] = asyncio.Queue()
            self._outbox = outbox
            for sub in self._subs.values():
                outbox.put_nowait(self._watch_request(sub))
            call = self._stub.Subscribe(self._requests(outbox), metadata=self._metadata, wait_for_ready=True)

            try:
                await call.initial_metadata()  # the core sends it at once: the stream is up
                self._down = asyncio.get_running_loop().create_future()
                self._up.set()
                backoff = 0.05
                async for response in call:
                    self._dispatch(response)
                log.warning("the core ended the subscription stream; reopening")
            except grpc.aio.AioRpcError as err:
                log.warning("subscription stream to the core failed (%s); reopening", err.code().name)
            finally:
                if self._up.is_set():
                    self._down_since = time.monotonic()
                self._up.clear()
                if self._down is not None and not self._down.done():
                    self._down.set_result(None)
                outbox.put_nowait(None)  # its request iterator ends rather than waiting for good
                call.cancel()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    def _dispatch(self, response: chat_pb2.SubscribeResponse) -> None:
        """Frame every event of one message from the core, then wake each client it touched once: the
        core paces its messages to the load (a window of its own), so every client gets at most one
        write per message, all its new frames together."""
        touched: list[Subscription] = []
        try:
            self._frame(response, touched)
        finally:
            if touched:
                now = time.monotonic()
                for sub in touched:
                    sub.last_push = now
                    sub.wake(now)

    def _frame(self, response: chat_pb2.SubscribeResponse, touched: list[Subscription]) -> None:
        subs = self._subs
        for ev in response.events:
            sub = subs.get(ev.sub_id)
            if sub is None:
                continue
            kind = ev.WhichOneof("kind")
            if kind == "chunk":
                seq = ev.seq
                tokens = ev.chunk.tokens
                skip = sub.last_seq + 1 - seq  # already delivered before a re-watch
                if skip > 0:
                    tokens = tokens[skip:]  # type: ignore[assignment]
                    seq += skip
                if not tokens:
                    continue
                if ev.answer:
                    sub.answer = ev.answer
                frame = sub.framer.tokens(seq, tokens)
                if frame:
                    sub.add(frame)
                    touched.append(sub)
                sub.last_seq = seq + len(tokens) - 1
                if sub.size + sub.framer.held > (sub.max_bytes or self._max_buffer):
                    self._cut_off(sub)
            elif kind == "done" or kind == "error":
                # The core ends a finished watch by itself. A terminal event this client already has
                # (it resumed past it) ends the stream with nothing more to say.
                subs.pop(sub.sub_id, None)
                if ev.seq > sub.last_seq or sub.renumber:
                    # (renumbered: the job ended after the tokens this client saw were lost with a
                    # restarted core, so its end must come after what the client has)
                    seq = max(ev.seq, sub.last_seq + 1)
                    sub.last_seq = seq
                    sub.end(
                        sub.framer.done(seq, ev.done.tokens)
                        if kind == "done"
                        else sub.framer.error(seq, ev.error.message, ev.error.reason)
                    )
                else:
                    sub.end()
            elif kind == "accepted":
                other_answer = bool(sub.answer and ev.accepted.answer and ev.accepted.answer != sub.answer)
                if other_answer and sub.last_seq > 0:
                    # The tokens this client has belong to an answer that was lost with a restarted core;
                    # the job has (or is making) another one. Splicing the two would be a lie.
                    subs.pop(sub.sub_id, None)
                    self._outbox.put_nowait(
                        chat_pb2.SubscribeRequest(unwatch=chat_pb2.Unwatch(sub_id=sub.sub_id))
                    )
                    sub.end(
                        sub.framer.error(
                            sub.last_seq + 1,
                            "the answer this stream carried was lost when the coordinator restarted, and"
                            " the job answered again; reopen the stream without Last-Event-ID",
                            ANSWER_LOST,
                        )
                    )
                    continue
                if not sub.ready.done():
                    sub.ready.set_result(None)

                    if _terminal(ev.accepted.state) and sub.last_seq > ev.accepted.tokens:
                        # Resuming at or past the terminal event (its id is tokens + 1): nothing to send.
                        sub.finished = True
                        self.release(sub)
                elif ev.accepted.tokens < sub.last_seq and _terminal(ev.accepted.state):
                    sub.renumber = True
                elif ev.accepted.tokens < sub.last_seq and not _terminal(ev.accepted.state):
                    # Re-watched after a core restart, but the tokens this client saw were lost with
                    # it: the answer is being produced again. Splicing the two would be a lie.
                    subs.pop(sub.sub_id, None)
                    self._outbox.put_nowait(
                        chat_pb2.SubscribeRequest(unwatch=chat_pb2.Unwatch(sub_id=sub.sub_id))
                    )
                    sub.end(
                        sub.framer.error(
                            sub.last_seq + 1,
                            "the coordinator restarted mid-answer and is producing it again;"
                            " reopen the stream without Last-Event-ID",
                            ANSWER_LOST,
                        )
                    )
            elif kind == "rejected":
                subs.pop(sub.sub_id, None)
                if not sub.ready.done():
                    sub.ready.set_exception(WatchRefused(ev.rejected.code, ev.rejected.message))
                else:  # a re-watch after a reconnect was refused
                    sub.end(sub.framer.error(sub.last_seq + 1, ev.rejected.message, ev.rejected.code))

    def _cut_off(self, sub: Subscription) -> None:
        if not sub.max_bytes:  # (one with a bound of its own is a primed watch: dropped, no slow client)
            self.cut_off += 1
        sub.cut = True
        sub.end(
            sub.framer.error(
                sub.last_seq + 1,
                "this client fell too far behind the stream; reconnect with Last-Event-ID to resume",
                "SLOW_CONSUMER",
            )
        )
        self.release(sub)

    async def _tick(self) -> None:
        """Keep idle streams alive; end them if the core stays unreachable past the grace period."""
        period = max(0.05, min(self._keepalive_s, self._grace_s) / 3)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            lost = not self._up.is_set() and now - self._down_since > self._grace_s
            for sub in list(self._subs.values()):
                if lost and sub.ready.done():
                    sub.end(
                        sub.framer.error(sub.last_seq + 1, "the coordinator is unreachable", "UNAVAILABLE")
                    )
                    self._subs.pop(sub.sub_id, None)
                elif not sub.ended and now - sub.last_push >= self._keepalive_s:
                    sub.push(KEEPALIVE_FRAME, now=True)

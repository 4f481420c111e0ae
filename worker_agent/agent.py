"""The agent: its identity at the core, and the loop that keeps one Connect stream open.

It asks the core what the network offers (its tiers and limits), registers once (or again, if the
core has forgotten its token), then dials: hello → Welcome →
a ``Session`` runs the stream's jobs until the stream ends. When the stream breaks, its jobs are
dropped (the core requeues them on other workers) and the agent dials again with exponential
backoff and jitter. ``drain()`` lets the session finish its jobs and close the stream cleanly;
``abort()`` drops everything at once. Backoff, heartbeats, token flushes and the drain timeout
follow the agent's ``Clock`` (the event loop's unless a test gives it another).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import grpc

from ashao.v1 import network_pb2_grpc, worker_pb2, worker_pb2_grpc
from ashao_common.targets import grpc_target
from ashao_common.tracing import Tracer
from worker_agent import AgentError
from worker_agent.backends import ChatBackend
from worker_agent.backends.images import ImageBackend
from worker_agent.clock import LOOP_CLOCK, Clock
from worker_agent.config import AgentSettings
from worker_agent.identity import (
    Credentials,
    credentials_path,
    load_credentials,
    load_owner_key,
    register,
    registration_request,
    save_credentials,
)
from worker_agent.network import fetch_network_info
from worker_agent.session import Session, SessionEnd, cancel_tasks

if TYPE_CHECKING:
    Call = grpc.aio.StreamStreamCall[worker_pb2.ConnectRequest, worker_pb2.ConnectResponse]
    Stub = worker_pb2_grpc.WorkerServiceAsyncStub
    NetworkStub = network_pb2_grpc.NetworkServiceAsyncStub

log = logging.getLogger("ashao.worker")

T = TypeVar("T")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    # Dial again quickly after a core restart; the agent's own backoff paces whole reconnects.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5000),
    # Keep NAT mappings of a quiet stream alive; the core refuses pings more often than every 10 s.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # Pictures travel as one ImageResult message.
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]


RETRY_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
"""Statuses of a unary call worth retrying (the core is down or busy); others are configuration errors."""
FATAL_CONNECT = frozenset({grpc.StatusCode.INVALID_ARGUMENT})
"""Connect statuses that reconnecting cannot cure (a hello the core refuses, e.g. an unknown tier)."""


def agent_version() -> str:
    """What the agent reports in its hello."""
    try:
        return f"ashao-worker/{importlib.metadata.version('ashao')}"
    except importlib.metadata.PackageNotFoundError:
        return "ashao-worker/unknown"


class _StreamLost(AgentError):
    """The stream ended with a status (or never got going)."""

    def __init__(self, code: grpc.StatusCode | None, details: str) -> None:
        super().__init__(f"{code.name if code else 'UNKNOWN'}: {details}")
        self.code = code


class Agent:
    """One worker: ``run()`` serves until ``drain()`` has finished or ``abort()`` is called."""

    def __init__(
        self,
        *,
        settings: AgentSettings,
        backend: ChatBackend | None = None,
        image_backend: ImageBackend | None = None,
        clock: Clock = LOOP_CLOCK,
        tracer: Tracer | None = None,
    ) -> None:
        """``tracer`` (tracing on): jobs continue the trace their assignment carries."""
        self._s = settings
        self._tracer = tracer
        self._clock = clock
        self._backend = backend
        self._image = image_backend
        self.tiers: tuple[str, ...] = ()
        """Tiers announced to the core (known once the core has said what the network offers)."""
        self._path = credentials_path(settings.data_dir, settings.name)
        self._draining = asyncio.Event()
        self._aborted = asyncio.Event()
        self._session: Session | None = None
        self._task: asyncio.Task[None] | None = None
        self._own_cancels = 0
        self._welcomed_at: float | None = None
        """When the core welcomed the current stream (None while it has not)."""
        self.credentials: Credentials | None = None
        """The identity in use, once known."""
        self.connections = 0
        """Streams the core welcomed."""
        self.registrations = 0
        """RegisterWorker calls that succeeded."""
        self.retries = 0
        """Backoff pauses taken before trying the core again."""
        self._batches = self._tokens = self._messages = self._started = self._heartbeats = 0

    # -- control ----------------------------------------------------------------------------

    def drain(self) -> None:
        """Take no new jobs, finish the running ones (bounded), then end. Idempotent."""
        if self._draining.is_set():
            return
        self._draining.set()
        if self._session is None:
            # No stream, so no job: stop registering or dialling now rather than after its deadline.
            self._cancel_run()

    def abort(self) -> None:
        """End at once: ``run()`` is cancelled, running jobs are dropped (the core requeues them). Idempotent."""
        if self._aborted.is_set():
            return
        self._aborted.set()
        self._draining.set()
        self._cancel_run()

    def _cancel_run(self) -> None:
        if self._task is not None and not self._task.done():
            self._own_cancels += 1
            self._task.cancel()

    @property
    def aborted(self) -> bool:
        """Whether ``abort()`` was called."""
        return self._aborted.is_set()

    @property
    def connected(self) -> bool:
        """Whether a welcomed stream is open now."""
        return self._session is not None

    @property
    def running(self) -> int:
        """Jobs running now."""
        return len(self._session.jobs) if self._session else 0

    @property
    def jobs_started(self) -> int:
        """Assignments run, over every stream."""
        return self._started + (self._session.jobs_started if self._session else 0)

    @property
    def batches_sent(self) -> int:
        """``TokenBatch`` messages written, over every stream."""
        return self._batches + (self._session.batcher.batches_sent if self._session else 0)

    @property
    def tokens_sent(self) -> int:
        """Tokens written, over every stream."""
        return self._tokens + (self._session.batcher.tokens_sent if self._session else 0)

    @property
    def heartbeats_sent(self) -> int:
        """Heartbeats queued, over every stream."""
        return self._heartbeats + (self._session.heartbeats_sent if self._session else 0)

    @property
    def messages_sent(self) -> int:
        """Messages of any kind written after the hello, over every stream."""
        return self._messages + (self._session.batcher.messages_sent if self._session else 0)

    # -- the connection loop ----------------------------------------------------------------

    async def run(self) -> None:
        """Learn what the network offers, register if needed, then hold a stream to the core,
        reconnecting, until drained or aborted.

        Raises AgentError when the settings do not fit the network, or the core refuses the worker for
        good (e.g. a bad name or tier).
        """
        task = asyncio.current_task()
        self._task = task
        try:
            await self._serve()
        except asyncio.CancelledError:
            # Our own drain()/abort() ends run() quietly; any other cancellation goes on up.
            if task is not None and self._own_cancels:
                left = task.cancelling()
                for _ in range(self._own_cancels):
                    left = task.uncancel()
                if left == 0:
                    log.warning("aborted" if self._aborted.is_set() else "stopped (no stream was open)")
                    return
            raise
        finally:
            self._task = None
            self._own_cancels = 0

    def _channel(self) -> grpc.aio.Channel:
        target, extra = grpc_target(self._s.core)  # several cores: it fails over to the next
        options = [*CHANNEL_OPTIONS, *extra]
        if not self._s.use_tls:
            return grpc.aio.insecure_channel(target, options=options)
        roots = self._s.tls_ca_file.read_bytes() if self._s.tls_ca_file is not None else None
        return grpc.aio.secure_channel(
            target, grpc.ssl_channel_credentials(root_certificates=roots), options=options
        )

    async def _serve(self) -> None:
        async with self._channel() as channel:
            network: NetworkStub = network_pb2_grpc.NetworkServiceStub(channel)
            info = await self._retrying(
                "learn what the network offers",
                lambda: fetch_network_info(network, timeout_s=self._s.call_timeout_s),
            )
            if info is None:
                return  # drained while the core was unreachable
            self.tiers = info.tiers_for(self._s)
            stub: Stub = worker_pb2_grpc.WorkerServiceStub(channel)
            creds = await asyncio.to_thread(load_credentials, self._path)
            if creds is not None:
                log.info("worker %s (%s): credentials from %s", creds.worker_id, self._s.name, self._path)
            else:
                creds = await self._register(stub)
            attempt = 0
            renewed = False
            while creds is not None and not self._draining.is_set():
                self.credentials = creds
                self._welcomed_at = None
                try:
                    end = await self._connect(stub, creds)
                    reason = "the core closed the stream"
                except _StreamLost as exc:
                    if exc.code == grpc.StatusCode.UNAUTHENTICATED and not renewed:
                        log.warning("the core does not know this worker (%s); registering again", exc)
                        renewed = True
                        creds = await self._register(stub)
                        continue
                    if exc.code in FATAL_CONNECT:
                        raise AgentError(f"the core refused this worker's hello: {exc}") from exc
                    end, reason = SessionEnd.BROKEN, str(exc)
                if end is not SessionEnd.BROKEN or self._draining.is_set():
                    return
                if self._welcomed_at is not None:  # the core welcomed us: the identity works again
                    renewed = False
                    if self._clock.time() - self._welcomed_at >= self._s.stable_session_s:
                        attempt = 0
                delay = self._backoff(attempt)
                attempt += 1
                if self._welcomed_at is not None:
                    log.info("connection to the core lost (%s); reconnecting in %.1f s", reason, delay)
                else:
                    log.info("core at %s unreachable (%s); retrying in %.1f s", self._s.core, reason, delay)
                await self._pause(delay)

    def _backoff(self, attempt: int) -> float:
        base = min(self._s.backoff_max_s, self._s.backoff_initial_s * 2.0 ** min(attempt, 30))
        return base * random.uniform(0.5, 1.0)  # jitter: a restarted core is not hit by every worker at once

    async def _pause(self, seconds: float) -> None:
        """Sleep on the agent's clock, cut short by ``drain()``/``abort()``."""
        self.retries += 1
        sleep = asyncio.create_task(self._clock.sleep(seconds), name="ashao-worker-backoff")
        stop = asyncio.create_task(self._draining.wait(), name="ashao-worker-backoff-stop")
        try:
            await asyncio.wait({sleep, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_tasks(sleep, stop)

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T | None:
        """``call()``, retried with backoff while the core is unreachable; None if drained first.

        Raises AgentError when the core answers with a status that retrying cannot cure.
        """
        attempt = 0
        while not self._draining.is_set():
            try:
                return await call()
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRY_CODES:
                    raise AgentError(
                        f"could not {what}: the core answered {exc.code().name}: {exc.details()}"
                    ) from exc
                delay = self._backoff(attempt)
                attempt += 1
                log.info(
                    "core at %s unreachable (%s); trying again to %s in %.1f s",
                    self._s.core,
                    exc.code().name,
                    what,
                    delay,
                )
                await self._pause(delay)
        return None

    async def _register(self, stub: Stub) -> Credentials | None:
        """Register (retrying while the core is unreachable) and save the credentials; None if drained."""
        creds = await self._retrying(
            "register this worker",
            lambda: register(
                stub,
                registration_request(
                    name=self._s.name,
                    tiers=self.tiers,
                    slots=self._s.slots,
                    join_token=self._s.join_token,
                    owner=load_owner_key(self._s.owner_key) if self._s.owner_key is not None else None,
                ),
                timeout_s=self._s.call_timeout_s,
            ),
        )
        if creds is None:
            return None
        await asyncio.to_thread(save_credentials, self._path, creds)
        self.registrations += 1
        log.info("registered as %s (%s); credentials saved to %s", creds.worker_id, self._s.name, self._path)
        return creds

    async def _connect(self, stub: Stub, creds: Credentials) -> SessionEnd:
        """One stream: hello, Welcome, then the session until it ends."""
        call: Call = stub.Connect(metadata=creds.metadata)
        try:
            try:
                async with asyncio.timeout(self._s.call_timeout_s):
                    await call.write(
                        worker_pb2.ConnectRequest(
                            hello=worker_pb2.WorkerHello(
                                slots=self._s.slots,
                                tiers=self.tiers,
                                agent_version=agent_version(),
                                continues_prefix=self._backend is not None and self._backend.continues_prefix,
                            )
                        )
                    )
                    first = await call.read()
            except TimeoutError:
                raise _StreamLost(
                    grpc.StatusCode.DEADLINE_EXCEEDED, "no Welcome from the core in time"
                ) from None
            if not isinstance(first, worker_pb2.ConnectResponse) or not first.HasField("welcome"):
                raise _StreamLost(None, "the core did not answer the hello with a Welcome")
            welcome = first.welcome
            session = Session(
                call,
                welcome,
                settings=self._s,
                backend=self._backend,
                image_backend=self._image,
                stopping=self._draining,
                clock=self._clock,
                tracer=self._tracer,
            )
            self._session = session
            self.connections += 1
            self._welcomed_at = self._clock.time()
            log.info(
                "connected to the core at %s as %s (slots %d, tiers %s)",
                self._s.core,
                welcome.worker_id or creds.worker_id,
                self._s.slots,
                ",".join(self.tiers),
            )
            try:
                return await session.run()
            finally:
                self._session = None
                self._batches += session.batcher.batches_sent
                self._tokens += session.batcher.tokens_sent
                self._messages += session.batcher.messages_sent
                self._started += session.jobs_started
                self._heartbeats += session.heartbeats_sent
        except grpc.aio.AioRpcError as exc:
            raise _StreamLost(exc.code(), exc.details() or "") from exc
        except asyncio.InvalidStateError:
            # A write raced the end of the call; its status says why it ended.
            call.cancel()  # no-op when it has ended; otherwise ends it, so code() cannot wait
            raise _StreamLost(await call.code(), await call.details()) from None
        finally:
            call.cancel()

"""Load for the fault cases and the soak: concurrent free and priced sends over HTTP, each job's SSE
stream read to its end, and a record of everything the clients were told.

A client behaves as a careful browser would. Every send carries an ``Idempotency-Key`` and is retried
(bounded) when its outcome is unknown (503, a broken connection); only 200 ``{jobId}`` acknowledges
it. A stream that breaks is resumed with ``Last-Event-ID``; an ``error`` event that tells the client
to resume (it fell behind) or to reopen from the start (the answer is being produced again) is
followed; any other ``error`` event, like ``done``, ends the stream. Every token event must be the
next id, exactly once; with synthetic workers each token names its index (``tok{i}``), so a
continuation that splices, skips or repeats shows. Everything else is a problem, kept in
``problems`` for the test to assert on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from nacl.signing import SigningKey

from ashao_common.base58 import b58encode

STREAM_PATH = "/api/chat/stream"


@dataclass
class Stream:
    """One acknowledged job as its client saw it."""

    job_id: str
    tier: str
    credential: str
    tokens: list[str] = field(default_factory=list)
    """Token values of the answer, in order (event id ``i`` is ``tokens[i - 1]``)."""
    terminal: dict[str, Any] | None = None
    """The data of the ``done`` or ``error`` event that ended the stream."""
    opens: int = 0
    resumes: int = 0
    """Reopened with Last-Event-ID after the stream broke (or the client was told to)."""
    restarts: int = 0
    """Reopened from the start because the answer was being produced again."""


@dataclass
class Client:
    """Who sends: a tier, and the credential of a signed-in user ('' for anonymous)."""

    tier: str
    credential: str = ""


class Load:
    """Clients sending and following jobs against one facade. ``async with`` it."""

    def __init__(
        self,
        base_url: str,
        *,
        numbered: bool = True,
        send_attempts: int = 40,
        send_deadline_s: float = 60.0,
        stream_opens: int = 60,
        stream_deadline_s: float = 90.0,
        failover: Sequence[str] = (),
    ) -> None:
        self.base_url = base_url
        self.base_urls = [base_url, *failover]
        """Facades in the order the clients fail over along: a request that breaks sends the next ones to
        the next facade (as a client given a list of addresses does)."""
        self.failovers = 0
        self.numbered = numbered
        self.send_attempts = send_attempts
        self.send_deadline_s = send_deadline_s
        self.stream_opens = stream_opens
        self.stream_deadline_s = stream_deadline_s
        self.http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(30.0, connect=5.0),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
        )
        self.streams: dict[str, Stream] = {}
        self.sends: Counter[str] = Counter()
        """Answers to sends by kind: "200", "503", "429", "broken" (no answer), ... (every attempt)."""
        self.stream_opens_by: Counter[str] = Counter()
        """Answers to stream opens by status ("broken": no answer)."""
        self.unacknowledged = 0
        """Sends given up without a 200."""
        self.refused_at: list[float] = []
        """Event-loop times of the 503 answers to sends."""
        self.problems: list[str] = []
        self.tokens_seen = 0
        self.live: set[str] = set()
        """Jobs with some tokens and no end yet."""
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Load:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.http.aclose()

    # -- users -------------------------------------------------------------------------------

    async def sign_in(self) -> str:
        """A new wallet signs in through the facade; its session token (the sign-up grant is its credit)."""
        key = SigningKey.generate()
        address = b58encode(bytes(key.verify_key))
        r = await self.http.get("/api/auth/nonce", params={"address": address})
        r.raise_for_status()
        message = r.json()["message"]
        signature = b58encode(key.sign(message.encode()).signature)
        r = await self.http.post(
            "/api/auth/verify", json={"address": address, "message": message, "signature": signature}
        )
        r.raise_for_status()
        token = r.cookies.get("ashao_session")
        assert token, "no session cookie"
        return token

    # -- running -----------------------------------------------------------------------------

    def start(self, clients: Sequence[Client], *, rounds: int | None = None, stagger_s: float = 0.05) -> None:
        """Each client sends and follows one job after another: ``rounds`` times, or until ``stop()``.
        Client ``i`` begins ``i * stagger_s`` seconds in, so that sends and ends are spread out."""
        for i, c in enumerate(clients):
            task = asyncio.create_task(self._client(i, c, rounds, i * stagger_s), name=f"load-client-{i}")
            self._tasks.append(task)

    def stop(self) -> None:
        """Clients finish the job they are following, then send no more."""
        self._stop.set()

    async def finish(self, timeout: float) -> None:
        """Wait for every client to end (failing the test if they do not within ``timeout``)."""
        done, pending = await asyncio.wait(self._tasks, timeout=timeout)
        for t in done:
            t.result()
        assert not pending, f"{len(pending)} load client(s) still running after {timeout} s"

    @property
    def done(self) -> int:
        """Streams that ended with ``done``."""
        return sum(1 for s in self.streams.values() if s.terminal and s.terminal["type"] == "done")

    @property
    def errors(self) -> int:
        """Streams that ended with ``error``."""
        return sum(1 for s in self.streams.values() if s.terminal and s.terminal["type"] == "error")

    def mark(self) -> int:
        """A mark in the sequence of acknowledged jobs (for ``done_since``)."""
        return len(self.streams)

    def done_since(self, mark: int) -> int:
        """Jobs acknowledged after ``mark`` whose stream ended with ``done``."""
        later = list(self.streams.values())[mark:]
        return sum(1 for s in later if s.terminal and s.terminal["type"] == "done")

    async def _client(self, i: int, c: Client, rounds: int | None, delay_s: float) -> None:
        await asyncio.sleep(delay_s)  # think time before the first send, not a synchronisation
        for r in itertools.count():
            if (rounds is not None and r >= rounds) or self._stop.is_set():
                return
            job_id = await self.send(c, f"client {i} round {r}")
            if job_id is not None:
                await self.follow(self.streams[job_id])

    def _broke(self, base: httpx.URL) -> None:
        """A request to the facade at ``base`` broke: go on with the next facade (once per break: the
        other clients whose requests broke on it meanwhile follow along)."""
        if len(self.base_urls) > 1 and self.http.base_url == base:
            at = [httpx.URL(u).netloc for u in self.base_urls].index(base.netloc)
            self.http.base_url = self.base_urls[(at + 1) % len(self.base_urls)]
            self.failovers += 1

    def _problem(self, text: str) -> None:
        self.problems.append(text)

    def _typed(self, what: str, r: httpx.Response) -> None:
        """A refusal must be the documented ``{error}`` body."""
        try:
            body = orjson.loads(r.content)
        except orjson.JSONDecodeError:
            body = None
        if not (isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]):
            self._problem(f"{what}: {r.status_code} without an {{error}} body: {r.content[:200]!r}")

    async def send(self, c: Client, content: str) -> str | None:
        """Send until acknowledged (the same Idempotency-Key each time); the job id, or None if given up."""
        key = f"load-{uuid.uuid4().hex}"
        headers = {"Idempotency-Key": key}
        if c.credential:
            headers["Authorization"] = f"Bearer {c.credential}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.send_deadline_s
        backoff = 0.05
        for _ in range(self.send_attempts):
            if loop.time() > deadline:
                break
            base = self.http.base_url
            try:
                r = await self.http.post(
                    "/api/chat/send", json={"tier": c.tier, "content": content}, headers=headers
                )
            except httpx.TransportError:
                self.sends["broken"] += 1
                self._broke(base)
            else:
                self.sends[str(r.status_code)] += 1
                if r.status_code == 200:
                    job_id = r.json()["jobId"]
                    if job_id in self.streams:
                        self._problem(f"{job_id}: acknowledged for two different sends")
                    self.streams[job_id] = Stream(job_id, c.tier, c.credential)
                    return str(job_id)
                self._typed("send", r)
                if r.status_code == 503:
                    self.refused_at.append(loop.time())
                if r.status_code == 429:
                    await asyncio.sleep(min(float(r.headers.get("retry-after", "1")), 2.0))
                    continue
                if r.status_code != 503:
                    if r.status_code != 402:
                        self._problem(f"send: unexpected {r.status_code} {r.content[:200]!r}")
                    self.unacknowledged += 1
                    return None
            await asyncio.sleep(backoff)  # a client's retry pace, not a synchronisation
            backoff = min(backoff * 2, 0.5)
        self.unacknowledged += 1
        return None

    async def follow(self, s: Stream) -> None:
        """Read ``s``'s stream to its end, resuming or reopening it as a careful client does."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stream_deadline_s
        backoff = 0.05
        for _ in range(self.stream_opens):
            if loop.time() > deadline:
                break
            headers = {"Authorization": f"Bearer {s.credential}"} if s.credential else {}
            if s.tokens:
                headers["Last-Event-ID"] = str(len(s.tokens))
            s.opens += 1
            base = self.http.base_url
            try:
                async with self.http.stream(
                    "GET", STREAM_PATH, params={"jobId": s.job_id}, headers=headers
                ) as r:
                    self.stream_opens_by[str(r.status_code)] += 1
                    if r.status_code == 200:
                        after = await self._read(s, r)
                    else:
                        await r.aread()
                        self._typed("stream open", r)
                        if r.status_code != 503:
                            self._problem(f"{s.job_id}: stream open answered {r.status_code} {r.content!r}")
                            return
                        after = "resume"
            except httpx.TransportError:
                self.stream_opens_by["broken"] += 1
                self._broke(base)
                after = "resume"
            if after == "end":
                self.live.discard(s.job_id)
                return
            if after == "restart":
                s.restarts += 1
                self.tokens_seen -= len(s.tokens)
                s.tokens.clear()
            else:
                s.resumes += 1
            await asyncio.sleep(backoff)  # a client's reconnect pace, not a synchronisation
            backoff = min(backoff * 2, 0.5)
        self.live.discard(s.job_id)
        self._problem(f"{s.job_id}: the stream never ended ({s.opens} opens, {len(s.tokens)} tokens)")

    async def _read(self, s: Stream, r: httpx.Response) -> str:
        """Events of one open stream: "end" after done or a final error, "resume" if it broke off,
        "restart" if told to reopen from the start."""
        fields: dict[str, str] = {}
        async for line in r.aiter_lines():
            if line:
                if not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value
                continue
            if "data" in fields:
                after = self._event(s, int(fields.get("id") or 0), orjson.loads(fields["data"]))
                if after is not None:
                    return after
            fields = {}
        return "resume"

    def _event(self, s: Stream, event_id: int, data: dict[str, Any]) -> str | None:
        kind = data.get("type")
        expected = len(s.tokens) + 1
        if kind == "token":
            value = str(data["value"])
            if event_id != expected:
                self._problem(f"{s.job_id}: token event {event_id} where {expected} was due ({value!r})")
                if event_id < expected:
                    return None  # a repeat: not part of the answer twice
            if self.numbered and value.split("@")[0].strip() != f"tok{len(s.tokens)}":
                self._problem(f"{s.job_id}: token {expected} is {value!r}")
            s.tokens.append(value)
            self.tokens_seen += 1
            self.live.add(s.job_id)
            return None
        if kind == "done":
            if event_id != expected or data.get("tokens") != len(s.tokens):
                self._problem(f"{s.job_id}: done {data} as event {event_id} after {len(s.tokens)} tokens")
            s.terminal = data
            return "end"
        if kind == "error":
            message = str(data.get("message", ""))
            if event_id != expected:
                self._problem(f"{s.job_id}: error as event {event_id} where {expected} was due")
            if "without Last-Event-ID" in message:
                return "restart"
            if "Last-Event-ID" in message:
                return "resume"
            s.terminal = data
            return "end"
        self._problem(f"{s.job_id}: unknown event {data}")
        return None


async def wait_workers(http: httpx.AsyncClient, n: int, timeout: float = 30.0) -> None:
    """Until the facade reports ``n`` active workers."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        with contextlib.suppress(httpx.TransportError):
            r = await http.get("/api/stats")
            if r.status_code == 200 and r.json()["activeWorkers"] >= n:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{n} worker(s) never became active")

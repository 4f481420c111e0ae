"""A scripted core for facade tests: a real grpc.aio server on loopback whose relay service answers
what the test tells it to, and records what the facade asked."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
import httpx

from ashao.v1 import relay_pb2, relay_pb2_grpc
from tests.helpers.stack import Facade, facade_settings


class ScriptedRelay(relay_pb2_grpc.RelayServiceServicer):
    """``ChatStream`` plays the messages put in ``stream`` (None ends the call); ``Chat`` answers
    ``envelope``. Every request is kept in ``requests``."""

    def __init__(self) -> None:
        self.requests: list[relay_pb2.ChatRequest | relay_pb2.ChatStreamRequest] = []
        self.stream: asyncio.Queue[relay_pb2.ChatStreamResponse | None] = asyncio.Queue()
        self.envelope = relay_pb2.SignedDocument(body=b'{"text":"ok"}', signature="sig", key_id="kid")

    def play(self, messages: Iterable[relay_pb2.ChatStreamResponse | None]) -> None:
        """Queue messages for the next ChatStream call."""
        for m in messages:
            self.stream.put_nowait(m)

    async def Chat(self, request: relay_pb2.ChatRequest, context: Any) -> relay_pb2.ChatResponse:
        self.requests.append(request)
        return relay_pb2.ChatResponse(envelope=self.envelope)

    async def ChatStream(  # type: ignore[override]
        self, request: relay_pb2.ChatStreamRequest, context: Any
    ) -> AsyncIterator[relay_pb2.ChatStreamResponse]:
        self.requests.append(request)
        while (message := await self.stream.get()) is not None:
            yield message


def admitted(seq: int = 1, model_id: str = "scripted") -> relay_pb2.ChatStreamResponse:
    return relay_pb2.ChatStreamResponse(seq=seq, admitted=relay_pb2.RelayAdmitted(model_id=model_id))


def chunk(seq: int, text: str) -> relay_pb2.ChatStreamResponse:
    return relay_pb2.ChatStreamResponse(seq=seq, chunk=text)


def pieces(seq: int, texts: list[str]) -> relay_pb2.ChatStreamResponse:
    return relay_pb2.ChatStreamResponse(seq=seq, pieces=relay_pb2.TextPieces(texts=texts))


def done(seq: int, body: bytes = b'{"verdict":"response"}') -> relay_pb2.ChatStreamResponse:
    return relay_pb2.ChatStreamResponse(
        seq=seq, done=relay_pb2.SignedDocument(body=body, signature="sig", key_id="kid")
    )


@contextlib.asynccontextmanager
async def scripted_relay(**facade: Any) -> AsyncIterator[tuple[ScriptedRelay, httpx.AsyncClient]]:
    """A scripted core and the real facade in front of it, with an HTTP client of the facade."""
    relay = ScriptedRelay()
    server = grpc.aio.server()
    relay_pb2_grpc.add_RelayServiceServicer_to_server(relay, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    front = Facade(facade_settings(f"127.0.0.1:{port}", **facade))
    await front.start()
    http = httpx.AsyncClient(base_url=front.url, timeout=10)
    try:
        yield relay, http
    finally:
        await http.aclose()
        await front.stop()
        await server.stop(grace=0.2)

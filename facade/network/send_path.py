"""``POST /api/chat/send`` served beneath FastAPI's per-request layers.

A send is the first hop of every job, on the path from the caller's request to a worker holding the
assignment; routing, dependency resolution and the per-request wrappers cost a good share of it. ``serve_send``
(a ``facade.fastpath`` route) serves a well-formed send (a JSON body ``SendBody`` accepts) with the route's own
function; anything else — a body that does not validate, another content type — goes on to the route,
so every error keeps its documented shape.
"""

from __future__ import annotations

from pydantic import ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from facade.client import CoreClient
from facade.limits import replay_body
from facade.network.chat import SendBody, send_message
from facade.network.errors import guarded

SEND_PATH = "/api/chat/send"


async def serve_send(scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
    """Serve a send whose body validates; hand on the rest (with the body read, replayed)."""
    request = Request(scope, receive)
    if request.headers.get("content-type", "").partition(";")[0].strip() != "application/json":
        await app(scope, receive, send)
        return
    try:
        raw = await request.body()
    except ClientDisconnect:
        return  # the client left while sending its body: no one to answer
    try:
        body = SendBody.model_validate_json(raw)
    except ValidationError:
        await app(scope, replay_body(raw, receive), send)  # the route answers the documented error
        return
    core: CoreClient = scope["app"].state.core
    response = await guarded(send_message(body, request, core))
    await response(scope, receive, send)

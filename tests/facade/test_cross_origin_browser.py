"""A page on another origin uses the API as the README says, in headless Chromium: the README's fetch()
reader streams a job sent with an API key (which an EventSource cannot follow, having no way to send the
key), and on the same site a session cookie set across origins lets an EventSource follow the user's
job with ``withCredentials``."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import Any

import pytest

from tests.facade.test_relay_api import Wallet
from tests.helpers.browser import browser, needs_chromium
from tests.helpers.core import StreamWorker, connect_worker
from tests.helpers.stack import start_stack, stop_stack
from tests.helpers.tools import ROOT

pytestmark = [needs_chromium, pytest.mark.timeout(90)]

ANSWER = ["across ", "origins"]
FOLLOW = """async ([url, withCredentials]) => new Promise((resolve) => {
  const seen = [];
  const es = new EventSource(url, { withCredentials });
  es.onmessage = (e) => {
    const evt = JSON.parse(e.data);
    seen.push(evt);
    if (evt.type === "done" || evt.type === "error") { es.close(); resolve(seen); }
  };
  es.onerror = () => { es.close(); resolve(["failed", ...seen]); };
})"""


def readme_js(after: str) -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"```js\n(.*?)```", readme[readme.index(after) :], re.S)
    assert match
    return match.group(1)


async def serve_page(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The other origin: a blank page, served from loopback as a real site would be (a page the browser
    did not load from loopback may not reach loopback at all)."""
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        await reader.readuntil(b"\r\n\r\n")
        body = b"<!doctype html><title>app</title>"
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
    writer.close()


async def serve(worker: StreamWorker) -> None:
    while True:
        msg = await worker.next(timeout=60)
        if msg.HasField("assignment"):
            await worker.tokens(msg.assignment.job_id, ANSWER)
            await worker.complete(msg.assignment.job_id)


async def test_a_page_on_another_origin_streams_with_fetch_and_with_a_same_site_session(
    tmp_path: Path,
) -> None:
    site = await asyncio.start_server(serve_page, "127.0.0.1", 0)
    page_origin = f"http://127.0.0.1:{site.sockets[0].getsockname()[1]}"  # same site, another origin
    s = await start_stack(tmp_path, cors_origins=page_origin)
    serving = asyncio.create_task(serve(await connect_worker(s.core, slots=4)))
    try:
        wallet = Wallet()
        message = (await s.http.get("/api/auth/nonce", params={"address": wallet.address})).json()["message"]
        signed = {"address": wallet.address, "message": message, "signature": wallet.sign(message.encode())}
        r = await s.http.post("/api/auth/verify", json=signed)
        session = r.cookies["ashao_session"]
        s.http.cookies.clear()
        r = await s.http.post(
            "/api/keys", json={"name": "page"}, headers={"Authorization": f"Bearer {session}"}
        )
        api_key = r.json()["secret"]

        async with browser() as b:
            page = await b.context.new_page()
            await page.goto(f"{page_origin}/")

            snippet = readme_js("**Streaming a job sent with an API key**")
            run = (
                "async ([API, apiKey]) => { const seen = []; const onEvent = (e) => seen.push(e);\n"
                f"{snippet}\nreturn {{ jobId, seen }}; }}"
            )
            result: dict[str, Any] = await page.evaluate(run, [s.facade.url, api_key])
            seen = result["seen"]
            assert [e["value"] for e in seen if e["type"] == "token"] == ANSWER
            assert seen[-1]["type"] == "done"
            stream = f"{s.facade.url}/api/chat/stream?jobId={result['jobId']}"
            assert await page.evaluate(FOLLOW, [stream, True]) == ["failed"]  # no way to send the key
            assert (await s.http.get(stream)).status_code == 404  # the job is its user's alone

            verify = """async ([API, body]) => (await fetch(`${API}/api/auth/verify`, {
              method: "POST", credentials: "include", headers: { "Content-Type": "application/json" },
              body: JSON.stringify(body) })).status"""
            message = (await s.http.get("/api/auth/nonce", params={"address": wallet.address})).json()[
                "message"
            ]
            signed = {
                "address": wallet.address,
                "message": message,
                "signature": wallet.sign(message.encode()),
            }
            assert await page.evaluate(verify, [s.facade.url, signed]) == 200
            send = """async ([API]) => (await (await fetch(`${API}/api/chat/send`, {
              method: "POST", credentials: "include", headers: { "Content-Type": "application/json" },
              body: JSON.stringify({ tier: "free", content: "hello" }) })).json()).jobId"""
            job = await page.evaluate(send, [s.facade.url])
            stream = f"{s.facade.url}/api/chat/stream?jobId={job}"
            assert await page.evaluate(FOLLOW, [stream, False]) == ["failed"]  # no cookie without credentials
            events = await page.evaluate(FOLLOW, [stream, True])
            assert [e["value"] for e in events if e["type"] == "token"] == ANSWER
            assert events[-1]["type"] == "done"
            assert b.blocked == []
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await serving
        await stop_stack(s)
        site.close()
        await site.wait_closed()

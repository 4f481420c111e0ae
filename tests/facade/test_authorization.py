"""Who may do what, over HTTP, in one table: each identity (nobody, user A by session cookie, A by API
key, user B, the operator's token, pull workers W1 and W2) against each resource (A's job, stream,
conversation, image, API keys, credits and stake; W1's job on the pull path; priced sends; the
operator's powers) gets exactly the status in its cell.

Another user's things are 404 (as if they did not exist); a caller the route needs and does not have
is 401; a worker acting on a job that is not its own is 403. Images are public by their unguessable id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ashao.v1 import worker_pb2
from tests.helpers.core import connect_worker
from tests.helpers.images import png
from tests.helpers.stack import Stack, start_stack, stop_stack
from tests.helpers.wallet import sign_in_over_http

pytestmark = pytest.mark.timeout(60)

IDENTITIES = ("anonymous", "A by cookie", "A by API key", "B", "operator", "worker W1", "worker W2")


@dataclass
class World:
    """What the cells act on: A's things, and W1's job (which is also A's)."""

    stack: Stack
    a: httpx.AsyncClient
    job: str
    conversation: str
    image: str
    key_id: str


Call = Callable[[World, httpx.AsyncClient], Awaitable[int]]


async def status(response: Awaitable[httpx.Response]) -> int:
    return (await response).status_code


async def stream_status(world: World, who: httpx.AsyncClient) -> int:
    async with who.stream("GET", f"/api/chat/stream?jobId={world.job}") as r:
        return r.status_code  # (a 200 stream is left at once: the job is still running)


async def keys_listing(world: World, who: httpx.AsyncClient) -> int:
    r = await who.get("/api/keys")
    if r.status_code == 200 and any(k["id"] == world.key_id for k in r.json()["keys"]):
        return 299  # A's key shows in the listing: only A may see it
    return r.status_code


async def grant_credits(world: World, who: httpx.AsyncClient) -> int:
    r = await who.post("/api/credits", json={"user": "x", "amount": 1})
    if r.status_code == 405 and "allow" not in r.headers:
        return 0  # a 405 must say what is allowed
    return r.status_code


async def revoke_a_fresh_key(world: World, who: httpx.AsyncClient) -> int:
    fresh = await world.a.post("/api/keys", json={"name": "spare"})
    assert fresh.status_code == 200, fresh.text
    return await status(who.delete(f"/api/keys/{fresh.json()['key']['id']}"))


ROWS: list[tuple[str, Call, tuple[int, ...]]] = [
    # Columns as IDENTITIES: anonymous, A by cookie, A by API key, B, operator, W1, W2 (299: 200 with A's
    # key in the listing).
    ("read A's job", lambda w, c: status(c.get(f"/api/jobs/{w.job}")), (404, 200, 200, 404, 404, 401, 401)),
    ("stream A's job", stream_status, (404, 200, 200, 404, 404, 401, 401)),
    (
        "read A's conversation",
        lambda w, c: status(c.get(f"/api/conversations/{w.conversation}")),
        (404, 200, 200, 404, 404, 401, 401),
    ),
    (
        "send into A's conversation",
        lambda w, c: status(
            c.post("/api/chat/send", json={"tier": "free", "content": "in", "conversationId": w.conversation})
        ),
        (400, 200, 200, 400, 400, 401, 401),  # "conversationId: unknown conversation", as for none
    ),
    ("read A's image (public)", lambda w, c: status(c.get(f"/api/images/{w.image}")), (200,) * 7),
    ("list API keys", keys_listing, (401, 299, 299, 200, 401, 401, 401)),
    ("revoke A's API key", revoke_a_fresh_key, (401, 200, 200, 404, 401, 401, 401)),
    ("read credits", lambda w, c: status(c.get("/api/credits")), (401, 200, 200, 200, 401, 401, 401)),
    (
        "stake",
        lambda w, c: status(c.post("/api/staking/stake", json={"amount": 1})),
        (401, 200, 200, 200, 401, 401, 401),
    ),
    (
        "send on a priced tier",
        lambda w, c: status(c.post("/api/chat/send", json={"tier": "basic", "content": "paid"})),
        (401, 200, 200, 200, 401, 401, 401),
    ),
    (
        "publish to W1's job (pull path)",
        lambda w, c: status(c.post("/api/worker/token", json={"jobId": w.job, "tokens": ["t"]})),
        (401, 401, 401, 401, 401, 200, 403),
    ),
    (
        "heartbeat as a worker",
        lambda w, c: status(c.post("/api/worker/heartbeat", json={})),
        (401, 401, 401, 401, 401, 200, 200),
    ),
    (
        "grant credits (operator-only: no HTTP route)",
        grant_credits,
        (405,) * 7,
    ),
]


async def test_the_authorization_matrix(tmp_path: Path) -> None:
    stack = await start_stack(tmp_path)
    clients: list[httpx.AsyncClient] = []

    def client(**headers: str) -> httpx.AsyncClient:
        c = httpx.AsyncClient(base_url=stack.facade.url, timeout=10, headers=headers)
        clients.append(c)
        return c

    try:
        http = stack.http
        a = client()
        a_id, a_session = await sign_in_over_http(a)
        key = (await a.post("/api/keys", json={"name": "ci"})).json()
        _, b_session = await sign_in_over_http(client())
        join = await stack.core.join_token()
        workers = []
        for name in ("w1", "w2"):
            r = await http.post(
                "/api/worker/register", json={"name": name, "tiers": ["basic"], "slots": 1, "joinToken": join}
            )
            assert r.status_code == 200, r.text
            workers.append(client(Authorization=f"Bearer {r.json()['workerToken']}"))
        w1, w2 = workers

        sent = (await a.post("/api/chat/send", json={"tier": "basic", "content": "mine"})).json()
        claim = (await w1.post("/api/worker/claim", json={"tier": "basic"})).json()
        assert claim["job"]["id"] == sent["jobId"]  # W1's job, and A's

        painter = await connect_worker(stack.core, slots=1, tiers=("image",))
        drawing = asyncio.create_task(
            a.post("/api/images/generate", json={"prompt": "a cat", "style": "Anime", "aspect": "Square"})
        )
        job = await painter.assignment()
        await painter.call.write(
            worker_pb2.ConnectRequest(
                image=worker_pb2.ImageResult(job_id=job.job_id, data=png(2, 2), mime_type="image/png")
            )
        )
        image = (await asyncio.wait_for(drawing, 10)).json()["image"]["id"]
        painter.cancel()

        operator_token = stack.core.operator[0][1].removeprefix("Bearer ")
        identities = {
            "anonymous": client(),
            "A by cookie": client(Cookie=f"ashao_session={a_session}"),
            "A by API key": client(Authorization=f"Bearer {key['secret']}"),
            "B": client(Cookie=f"ashao_session={b_session}"),
            "operator": client(Authorization=f"Bearer {operator_token}"),
            "worker W1": w1,
            "worker W2": w2,
        }
        assert tuple(identities) == IDENTITIES
        world = World(stack, a, sent["jobId"], sent["conversationId"], image, key["key"]["id"])
        wrong = []
        for resource, call, expected in ROWS:
            got = tuple([await call(world, identities[who]) for who in IDENTITIES])
            for who, want, have in zip(IDENTITIES, expected, got, strict=True):
                if want != have:
                    wrong.append(f"{resource} / {who}: expected {want}, got {have}")
        assert not wrong, "\n".join(wrong)
        assert a_id.startswith("usr_")
    finally:
        for c in clients:
            await c.aclose()
        await stop_stack(stack)

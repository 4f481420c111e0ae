"""The network API's accounts and money over real HTTP: wallet sign-in and the session cookie, credits
and priced tiers, ownership, API keys, the treasury and staking, images, and a worker's earnings.

A real core and the real facade run on loopback sockets (tests/facade/conftest.py); every client here
speaks HTTP to the facade, and no failure in these tests may be an opaque 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from nacl.signing import SigningKey

from ashao.v1 import worker_pb2
from ashao_common.base58 import b58encode
from core.economics import SIGNUP_GRANT, TIERS
from tests.helpers.core import connect_worker
from tests.helpers.images import png
from tests.helpers.stack import Stack, start_stack, stop_stack
from tests.helpers.wait import eventually, eventually_async

pytestmark = pytest.mark.timeout(60)

SESSION = "ashao_session"


async def documented_failure(response: httpx.Response) -> None:
    """Response hook: every failure is a JSON ``{"error": ...}`` body, and nothing is an opaque 500."""
    if response.status_code < 400 or response.request.method == "OPTIONS":
        return
    await response.aread()
    assert response.status_code != 500, f"{response.request.url}: 500 {response.text!r}"
    assert response.headers.get("content-type", "").startswith("application/json"), response.text
    body = orjson.loads(response.content)
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body


class Net:
    """A running stack, plus separate HTTP clients ("browsers") each with its own cookie jar."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.http = stack.http
        self._clients: list[httpx.AsyncClient] = []

    def browser(self, **kw: Any) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            base_url=self.stack.facade.url, timeout=10, event_hooks={"response": [documented_failure]}, **kw
        )
        self._clients.append(client)
        return client

    async def close(self) -> None:
        for c in self._clients:
            await c.aclose()


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, core_overrides: dict[str, Any] | None = None, **facade_overrides: Any
) -> AsyncIterator[Net]:
    stack = await start_stack(tmp_path, core_overrides, **facade_overrides)
    stack.http.event_hooks["response"].append(documented_failure)
    net = Net(stack)
    try:
        yield net
    finally:
        await net.close()
        await stop_stack(stack)


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    async with running(tmp_path) as n:
        yield n


class Wallet:
    """An Ed25519 wallet, addressed as Solana does (base58 public key)."""

    def __init__(self) -> None:
        self.key = SigningKey.generate()
        self.address = b58encode(bytes(self.key.verify_key))

    def sign(self, data: str | bytes) -> str:
        raw = data.encode() if isinstance(data, str) else data
        return b58encode(self.key.sign(raw).signature)


async def challenge(http: httpx.AsyncClient, address: str) -> str:
    r = await http.get("/api/auth/nonce", params={"address": address})
    assert r.status_code == 200, r.text
    return str(r.json()["message"])


async def verify(
    http: httpx.AsyncClient, address: str, message: str, signature: str, **kw: Any
) -> httpx.Response:
    return await http.post(
        "/api/auth/verify", json={"address": address, "message": message, "signature": signature}, **kw
    )


def set_cookie(response: httpx.Response) -> dict[str, str]:
    """The session cookie's attributes from Set-Cookie: lower-cased names → values ('' for flags)."""
    headers = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{SESSION}=")]
    assert len(headers) == 1, headers
    first, *attributes = (part.strip() for part in headers[0].split(";"))
    out = {"value": first.split("=", 1)[1]}
    for attribute in attributes:
        name, _, value = attribute.partition("=")
        out[name.lower()] = value
    return out


class User:
    """A signed-in wallet and its browser (which holds the session cookie)."""

    def __init__(self, wallet: Wallet, http: httpx.AsyncClient, user_id: str, token: str) -> None:
        self.wallet = wallet
        self.http = http
        self.id = user_id
        self.token = token

    async def credits(self) -> int:
        r = await self.http.get("/api/credits")
        assert r.status_code == 200, r.text
        return int(r.json()["credits"])


async def sign_in(net: Net) -> User:
    wallet = Wallet()
    http = net.browser()
    message = await challenge(http, wallet.address)
    r = await verify(http, wallet.address, message, wallet.sign(message))
    assert r.status_code == 200, r.text
    return User(wallet, http, r.json()["user"]["id"], set_cookie(r)["value"])


async def queue_depth(http: httpx.AsyncClient) -> int:
    r = await http.get("/api/stats")
    assert r.status_code == 200
    return int(r.json()["queueDepth"])


async def job_state(http: httpx.AsyncClient, job_id: str) -> str:
    r = await http.get(f"/api/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return str(r.json()["job"]["state"])


async def until_state(http: httpx.AsyncClient, job_id: str, state: str) -> None:
    async def reached() -> bool:
        return await job_state(http, job_id) == state

    await eventually_async(reached)


# -- sign-in and the session -------------------------------------------------------------------


async def test_sign_in_sets_a_bounded_http_only_cookie_and_logout_ends_it(tmp_path: Path) -> None:
    async with running(tmp_path, core_overrides={"session_ttl_s": 3600.0}) as net:
        wallet, http = Wallet(), net.browser()
        r = await http.get("/api/auth/nonce", params={"address": wallet.address})
        assert r.status_code == 200 and set(r.json()) == {"message", "nonce", "expiresAt"}
        issued = r.json()
        message = issued["message"]
        lines = message.split("\n")
        assert lines[0].endswith(" wants you to sign in with your Solana account:")
        assert lines[1] == wallet.address and lines[2] == "" and lines[3] and lines[4] == ""
        fields = dict(line.split(": ", 1) for line in lines[5:])
        assert list(fields) == ["URI", "Version", "Chain ID", "Nonce", "Issued At", "Expiration Time"]
        assert fields["Nonce"] == issued["nonce"] and fields["Version"] == "1"
        assert issued["expiresAt"] > time.time() * 1000

        r = await verify(http, wallet.address, message, wallet.sign(message))
        assert r.status_code == 200, r.text
        assert r.json()["user"]["address"] == wallet.address and r.json()["user"]["id"].startswith("usr_")
        cookie = set_cookie(r)
        assert cookie["value"].startswith("sess_")
        assert "httponly" in cookie and cookie["samesite"].lower() == "lax" and cookie["path"] == "/"
        assert 3500 <= int(cookie["max-age"]) <= 3600  # bounded by the session's lifetime
        assert "secure" not in cookie  # plain http: a Secure cookie would never come back

        me = await http.get("/api/auth/me")
        assert me.status_code == 200
        assert me.json()["user"]["address"] == wallet.address and me.json()["credits"] == SIGNUP_GRANT
        assert (await http.get("/api/credits")).json() == {"credits": SIGNUP_GRANT}

        out = await http.post("/api/auth/logout")
        assert out.status_code == 200
        assert SESSION not in http.cookies
        # the session is over in the core, not only forgotten by this browser
        stale = net.browser(headers={"Cookie": f"{SESSION}={cookie['value']}"})
        for path in ("/api/auth/me", "/api/credits"):
            r = await stale.get(path)
            assert r.status_code == 401 and set(r.json()) == {"error"}


async def test_cookie_is_secure_behind_a_trusted_https_proxy(tmp_path: Path) -> None:
    async with running(tmp_path, trust_forwarded=True) as net:
        wallet, http = Wallet(), net.browser()
        message = await challenge(http, wallet.address)
        r = await verify(
            http, wallet.address, message, wallet.sign(message), headers={"X-Forwarded-Proto": "https"}
        )
        assert r.status_code == 200
        cookie = set_cookie(r)
        assert "secure" in cookie and "httponly" in cookie and cookie["samesite"].lower() == "lax"
        message = await challenge(http, wallet.address)
        r = await verify(http, wallet.address, message, wallet.sign(message))
        assert "secure" not in set_cookie(r)  # the proxy said nothing: plain http


async def test_untrusted_forwarded_proto_does_not_make_the_cookie_secure(net: Net) -> None:
    wallet, http = Wallet(), net.browser()
    message = await challenge(http, wallet.address)
    r = await verify(
        http, wallet.address, message, wallet.sign(message), headers={"X-Forwarded-Proto": "https"}
    )
    assert r.status_code == 200
    assert "secure" not in set_cookie(r)  # trust_forwarded is off: the header is the client's word only


async def test_every_sign_in_failure_is_401_saying_why(net: Net) -> None:
    http = net.http
    wallet, other = Wallet(), Wallet()

    async def refused(address: str, message: str, signature: str) -> str:
        r = await verify(http, address, message, signature)
        assert r.status_code == 401, r.text
        assert set(r.json()) == {"error"}
        assert not r.headers.get_list("set-cookie")
        return str(r.json()["error"])

    message = await challenge(http, wallet.address)
    assert (await verify(http, wallet.address, message, wallet.sign(message))).status_code == 200
    assert "already used" in await refused(wallet.address, message, wallet.sign(message))

    message = await challenge(http, wallet.address)
    wallets = net.stack.core.app.wallets
    wallets.clock = lambda: time.time() + wallets.settings.nonce_ttl_s + 1  # the message has expired
    try:
        assert "expired" in await refused(wallet.address, message, wallet.sign(message))
    finally:
        wallets.clock = time.time

    message = await challenge(http, wallet.address)
    tampered = message.replace("Sign in to ashao.", "Sign in to ashao and send all funds.")
    assert tampered != message
    assert "altered" in await refused(wallet.address, tampered, wallet.sign(tampered))

    message = await challenge(http, wallet.address)
    domain = message.split(" wants you", 1)[0]
    foreign = message.replace(f"{domain} wants", "evil.example wants", 1)
    assert "another domain" in await refused(wallet.address, foreign, wallet.sign(foreign))

    message = await challenge(http, wallet.address)
    assert "another address" in await refused(other.address, message, other.sign(message))
    assert "signature" in await refused(wallet.address, message, other.sign(message))
    assert "signature" in await refused(wallet.address, message, "not-a-signature")
    # none of the failures consumed the last nonce
    assert (await verify(http, wallet.address, message, wallet.sign(message))).status_code == 200


async def test_bad_address_is_400(net: Net) -> None:
    for address in ("", "0OIl-not-base58", b58encode(b"\x01" * 16)):
        r = await net.http.get("/api/auth/nonce", params={"address": address})
        assert r.status_code == 400, (address, r.text)
        assert set(r.json()) == {"error"} and "address" in r.json()["error"]
    r = await net.http.post("/api/auth/verify", json={"message": "x", "signature": "y"})
    assert r.status_code == 400 and "address" in r.json()["error"]


async def test_routes_needing_a_user_are_401_without_one(net: Net) -> None:
    image = {"prompt": "a cat", "style": "Anime", "aspect": "Square"}
    calls: list[tuple[str, str, Any]] = [
        ("GET", "/api/credits", None),
        ("GET", "/api/staking", None),
        ("POST", "/api/staking/stake", {"amount": 1}),
        ("POST", "/api/staking/unstake", {"amount": 1}),
        ("GET", "/api/keys", None),
        ("POST", "/api/keys", {"name": "ci"}),
        ("GET", "/api/auth/me", None),
        ("POST", "/api/images/generate", image),
    ]
    anonymous = net.browser()
    forged_cookie = net.browser(headers={"Cookie": f"{SESSION}=sess_forged"})
    forged_bearer = net.browser(headers={"Authorization": "Bearer ak_forged"})
    for client in (anonymous, forged_cookie, forged_bearer):
        for method, path, body in calls:
            r = await client.request(method, path, json=body)
            assert r.status_code == 401, (method, path, r.text)
            assert set(r.json()) == {"error"} and r.json()["error"]
    assert await queue_depth(net.http) == 0  # the image was not queued for nobody


# -- credits and priced tiers -----------------------------------------------------------------


async def test_priced_tiers_charge_the_signed_in_user_and_402_when_out(net: Net) -> None:
    r = await net.http.post("/api/chat/send", json={"tier": "basic", "content": "free ride?"})
    assert r.status_code == 401 and set(r.json()) == {"error"}
    assert await queue_depth(net.http) == 0
    user = await sign_in(net)
    spent = 0
    for tier in ("basic", "pro", "ultra"):
        r = await user.http.post("/api/chat/send", json={"tier": tier, "content": f"on {tier}"})
        assert r.status_code == 200, r.text
        spent += TIERS[tier].credit_cost
        assert await user.credits() == SIGNUP_GRANT - spent
    r = await user.http.post("/api/chat/send", json={"tier": "free", "content": "costs nothing"})
    assert r.status_code == 200 and await user.credits() == SIGNUP_GRANT - spent
    ultra = TIERS["ultra"].credit_cost
    while await user.credits() >= ultra:
        assert (
            await user.http.post("/api/chat/send", json={"tier": "ultra", "content": "x"})
        ).status_code == 200
    left, depth = await user.credits(), await queue_depth(net.http)
    r = await user.http.post("/api/chat/send", json={"tier": "ultra", "content": "one too many"})
    assert r.status_code == 402 and set(r.json()) == {"error"} and "credits" in r.json()["error"]
    assert await user.credits() == left and await queue_depth(net.http) == depth  # nothing queued


async def test_concurrent_sends_spend_each_credit_once(net: Net) -> None:
    user = await sign_in(net)
    cost = TIERS["ultra"].credit_cost
    covered, spare = divmod(SIGNUP_GRANT, cost)
    if spare:  # leave credits for exactly ``covered`` sends
        r = await user.http.post("/api/staking/stake", json={"amount": spare})
        assert r.status_code == 200
    assert await user.credits() == covered * cost
    depth = await queue_depth(net.http)
    results = await asyncio.gather(
        *(
            user.http.post("/api/chat/send", json={"tier": "ultra", "content": f"burst {i}"})
            for i in range(30)
        )
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [200] * covered + [402] * (30 - covered)
    accepted = {r.json()["jobId"] for r in results if r.status_code == 200}
    assert len(accepted) == covered
    assert await user.credits() == 0
    assert await queue_depth(net.http) == depth + covered


async def test_other_users_jobs_and_conversations_are_404(net: Net) -> None:
    alice, bob = await sign_in(net), await sign_in(net)
    r = await alice.http.post("/api/chat/send", json={"tier": "basic", "content": "mine"})
    job, conv = r.json()["jobId"], r.json()["conversationId"]
    for client in (bob.http, net.browser()):  # another user, and nobody
        for path in (f"/api/jobs/{job}", f"/api/chat/stream?jobId={job}", f"/api/conversations/{conv}"):
            r = await client.get(path)
            assert r.status_code == 404, (path, r.text)
            assert set(r.json()) == {"error"}
        r = await client.post(
            "/api/chat/send", json={"tier": "free", "content": "in", "conversationId": conv}
        )
        assert r.status_code in (400, 404) and "conversationId" in r.json()["error"]
    assert (await alice.http.get(f"/api/jobs/{job}")).json()["job"]["conversationId"] == conv
    convo = (await alice.http.get(f"/api/conversations/{conv}")).json()
    assert convo["messages"] == [{"role": "user", "content": "mine"}]
    async with alice.http.stream("GET", f"/api/chat/stream?jobId={job}") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")


# -- API keys ----------------------------------------------------------------------------------


async def test_api_keys_are_shown_once_usable_listed_and_revocable(net: Net) -> None:
    alice, bob = await sign_in(net), await sign_in(net)
    r = await alice.http.post("/api/keys", json={"name": "ci"})
    assert r.status_code == 200, r.text
    key, secret = r.json()["key"], r.json()["secret"]
    assert secret.startswith("ak_") and key["name"] == "ci" and key["revokedAt"] is None
    by_key = net.browser(headers={"Authorization": f"Bearer {secret}"})
    me = await by_key.get("/api/auth/me")
    assert me.status_code == 200 and me.json()["user"]["id"] == alice.id
    r = await by_key.post("/api/chat/send", json={"tier": "basic", "content": "by key"})
    assert r.status_code == 200 and await alice.credits() == SIGNUP_GRANT - TIERS["basic"].credit_cost
    listed = await alice.http.get("/api/keys")
    assert [k["id"] for k in listed.json()["keys"]] == [key["id"]]
    assert secret not in listed.text
    assert (await bob.http.get("/api/keys")).json() == {"keys": []}
    r = await bob.http.delete(f"/api/keys/{key['id']}")
    assert r.status_code == 404 and set(r.json()) == {"error"}
    assert (await by_key.get("/api/auth/me")).status_code == 200  # still alive
    r = await alice.http.delete(f"/api/keys/{key['id']}")
    assert r.status_code == 200
    r = await by_key.get("/api/auth/me")
    assert r.status_code == 401 and set(r.json()) == {"error"}
    assert (await by_key.post("/api/chat/send", json={"tier": "basic", "content": "x"})).status_code == 401
    assert (await alice.http.get("/api/keys")).json()["keys"][0]["revokedAt"] is not None
    assert (await alice.http.delete(f"/api/keys/{key['id']}")).status_code == 404  # already revoked


# -- treasury and staking ------------------------------------------------------------------------


async def test_treasury_moves_by_the_tiers_split_of_a_completed_job(tmp_path: Path) -> None:
    async with running(tmp_path, core_overrides={"snapshot_interval_s": 0.2}) as net:
        r = await net.http.get("/api/treasury")
        assert r.status_code == 200
        doc = r.json()
        assert {"balance", "totalBurned", "rewardsPaid", "circulatingSupply", "price", "series"} <= set(doc)
        assert isinstance(doc["series"], list)
        user = await sign_in(net)
        before = (await net.http.get("/api/treasury")).json()
        worker = await connect_worker(net.stack.core, slots=1)
        r = await user.http.post("/api/chat/send", json={"tier": "ultra", "content": "pay the network"})
        job = r.json()["jobId"]
        a = await worker.assignment()
        assert a.job_id == job
        await worker.tokens(job, ["paid ", "answer"])
        await worker.complete(job)
        await until_state(user.http, job, "done")
        after = (await net.http.get("/api/treasury")).json()
        cost = TIERS["ultra"].credit_cost
        to_worker, to_treasury, burned = TIERS["ultra"].split(cost)
        assert after["balance"] - before["balance"] == to_treasury
        assert after["totalBurned"] - before["totalBurned"] == burned
        assert after["rewardsPaid"] - before["rewardsPaid"] == to_worker
        assert after["circulatingSupply"] - before["circulatingSupply"] == -(to_treasury + burned)
        assert after["price"] == pytest.approx(1 + after["balance"] / after["circulatingSupply"])
        assert after["price"] > before["price"]
        # snapshots accumulate for the chart, each with the same figures
        series: list[dict[str, Any]] = []

        async def snapshot_taken() -> bool:
            nonlocal series
            series = (await net.http.get("/api/treasury")).json()["series"]
            return bool(series) and series[-1]["balance"] == after["balance"]

        await eventually_async(snapshot_taken)
        assert series[-1]["balance"] == after["balance"] and series[-1]["totalBurned"] == after["totalBurned"]
        assert {"at", "balance", "totalBurned", "rewardsPaid", "circulatingSupply", "price"} <= set(
            series[-1]
        )
        assert [s["at"] for s in series] == sorted(s["at"] for s in series)
        r = await net.http.get("/api/treasury?limit=x")
        assert r.status_code == 400 and "limit" in r.json()["error"]
        worker.cancel()


async def test_staking_moves_balance_and_stake_and_names_a_bad_amount(net: Net) -> None:
    user = await sign_in(net)
    r = await user.http.get("/api/staking")
    assert r.status_code == 200 and r.json() == {"balance": SIGNUP_GRANT, "staked": 0, "rewards": 0}
    r = await user.http.post("/api/staking/stake", json={"amount": 40})
    assert r.status_code == 200 and r.json() == {"balance": SIGNUP_GRANT - 40, "staked": 40, "rewards": 0}
    r = await user.http.post("/api/staking/unstake", json={"amount": 15})
    assert r.json() == {"balance": SIGNUP_GRANT - 25, "staked": 25, "rewards": 0}
    assert (await user.http.get("/api/staking")).json()["staked"] == 25
    assert await user.credits() == SIGNUP_GRANT - 25
    bad: list[tuple[str, Any]] = [
        ("stake", {"amount": 0}),
        ("stake", {"amount": -5}),
        ("stake", {"amount": 1.5}),
        ("stake", {"amount": "10"}),
        ("stake", {"amount": True}),
        ("stake", {}),
        ("stake", {"amount": SIGNUP_GRANT - 25 + 1}),
        ("unstake", {"amount": 0}),
        ("unstake", {"amount": 26}),
    ]
    for route, body in bad:
        r = await user.http.post(f"/api/staking/{route}", json=body)
        assert r.status_code == 400, (route, body, r.text)
        assert set(r.json()) == {"error"} and "amount" in r.json()["error"], (route, body)
    assert (await user.http.get("/api/staking")).json() == {
        "balance": SIGNUP_GRANT - 25,
        "staked": 25,
        "rewards": 0,
    }


# -- images ------------------------------------------------------------------------------------


async def test_image_is_generated_stored_served_and_charged(net: Net) -> None:
    user = await sign_in(net)
    for body, field in (
        ({"prompt": "a cat", "style": "Baroque", "aspect": "Square"}, "style"),
        ({"prompt": "a cat", "style": "Anime", "aspect": "Wide"}, "aspect"),
        ({"prompt": "", "style": "Anime", "aspect": "Square"}, "prompt"),
        ({"prompt": "a cat", "style": "Anime", "aspect": "Square", "nsfw": "no"}, "nsfw"),
    ):
        r = await user.http.post("/api/images/generate", json=body)
        assert r.status_code == 400, (body, r.text)
        assert set(r.json()) == {"error"} and r.json()["error"].startswith(field)
    # No image worker connected yet: refused at once (not after the image timeout), nothing charged.
    r = await user.http.post(
        "/api/images/generate", json={"prompt": "a cat", "style": "Anime", "aspect": "Square"}
    )
    assert r.status_code == 503 and set(r.json()) == {"error"}, r.text
    assert r.json()["error"].startswith("no image worker is connected")
    assert await user.credits() == SIGNUP_GRANT
    worker = await connect_worker(net.stack.core, slots=1, tiers=("image",))
    prompt = "a violet aurora over a quiet network of cities"
    call = asyncio.create_task(
        user.http.post(
            "/api/images/generate",
            json={"prompt": prompt, "style": "Cinematic", "aspect": "Landscape", "nsfw": False},
        )
    )
    a = await worker.assignment()
    assert a.tier == "image" and a.image.prompt == prompt and (a.image.width, a.image.height) == (1344, 768)
    data = png(3, 2)
    await worker.call.write(
        worker_pb2.ConnectRequest(
            image=worker_pb2.ImageResult(job_id=a.job_id, data=data, mime_type="image/png")
        )
    )
    r = await asyncio.wait_for(call, 10)
    assert r.status_code == 200, r.text
    image = r.json()["image"]
    assert image["id"].startswith("img_") and image["prompt"] == prompt and image["url"]
    assert (image["style"], image["aspect"]) == ("Cinematic", "Landscape")
    got = await net.browser().get(image["url"])  # public by its unguessable id
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-type"] == "image/png"
    assert got.headers["x-content-type-options"] == "nosniff"  # a browser never runs it as anything else
    assert await user.credits() == SIGNUP_GRANT - TIERS["image"].credit_cost
    r = await net.http.get("/api/images/img_doesnotexist0000")
    assert r.status_code == 404 and set(r.json()) == {"error"}
    worker.cancel()


# -- a worker's account -------------------------------------------------------------------------


async def test_worker_me_shows_earnings_after_a_job_on_the_pull_path(net: Net) -> None:
    join = await net.stack.core.join_token()
    r = await net.http.post(
        "/api/worker/register", json={"name": "puller", "tiers": ["pro"], "slots": 1, "joinToken": join}
    )

    assert r.status_code == 200, r.text
    token = r.json()["workerToken"]
    worker = net.browser(headers={"Authorization": f"Bearer {token}"})
    me = (await worker.get("/api/worker/me")).json()
    assert (me["earnings"], me["jobsCompleted"], me["name"]) == (0, 0, "puller")
    user = await sign_in(net)
    job = (await user.http.post("/api/chat/send", json={"tier": "pro", "content": "pull me"})).json()["jobId"]
    claim = (await worker.post("/api/worker/claim", json={"tier": "pro"})).json()
    assert claim["job"]["id"] == job and claim["messages"] == [{"role": "user", "content": "pull me"}]
    r = await worker.post("/api/worker/token", json={"jobId": job, "tokens": ["pulled ", "answer"]})
    assert r.status_code == 200
    r = await worker.post("/api/worker/complete", json={"jobId": job})
    assert r.status_code == 200 and r.json()["tokens"] == 2
    await eventually(lambda: net.stack.core.app.jobs.snapshot().jobs_completed >= 1)
    me = (await worker.get("/api/worker/me")).json()
    assert me["earnings"] == TIERS["pro"].split(TIERS["pro"].credit_cost)[0]
    assert me["jobsCompleted"] == 1 and me["tokensGenerated"] == 2 and me["workerId"]
    r = await net.http.get("/api/worker/me")
    assert r.status_code == 401 and set(r.json()) == {"error"}

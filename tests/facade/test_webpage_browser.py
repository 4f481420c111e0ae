"""The web page in headless Chromium against a whole network on loopback: streaming chat (token by
token, and resumed after a reload mid-answer), wallet sign-in with an injected wallet, images,
staking, the treasury chart, and the API reference working with nothing reachable but the facade.

Each page may reach loopback only (``tests.helpers.browser``); every test ends by checking that it
asked for nothing else.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Page, Route, expect

from core.economics import SIGNUP_GRANT, TIERS
from tests.helpers.browser import Browser, browser, injected_wallet, needs_chromium, wallet_key
from tests.helpers.livenet import LiveNet, StepBackend, live_network
from tests.helpers.wait import eventually_async

pytestmark = needs_chromium

TOKENS = 8
SOURCES = """(() => {
  const Native = window.EventSource;
  window.openedSources = [];
  window.EventSource = class extends Native {
    constructor(...args) { super(...args); window.openedSources.push(this); }
  };
})();"""
"""Keeps every EventSource the page opens in ``window.openedSources``, so a test can count them."""


def answer(n: int) -> str:
    """The first ``n`` tokens of a StepBackend answer, as the page shows them."""
    return "".join(f"tok{i} " for i in range(n))


@pytest.fixture
def step() -> StepBackend:
    return StepBackend(TOKENS)


@pytest.fixture
async def net(tmp_path: Path, step: StepBackend) -> AsyncIterator[LiveNet]:
    async with live_network(tmp_path, chat_backend=step) as n:
        yield n


@pytest.fixture
async def web() -> AsyncIterator[Browser]:
    async with browser() as b:
        await b.context.add_init_script(SOURCES)
        yield b


async def open_page(web: Browser, url: str) -> tuple[Page, list[str]]:
    """The page at ``url`` once its start-up calls have answered, and the list its uncaught script
    errors are collected in."""
    page = await web.context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(url)
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return page, errors


async def ready(page: Page) -> None:
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")


async def send(page: Page, text: str) -> None:
    await page.fill("#prompt", text)
    await page.click("#send")
    await expect(page.locator("li.message.user").last).to_have_text(text)


async def sign_in(web: Browser, page: Page, address: str) -> None:
    await page.click("#sign-in")
    await expect(page.locator("#who")).to_have_attribute("title", address)


async def test_tokens_appear_one_by_one_as_the_worker_produces_them(
    net: LiveNet, step: StepBackend, web: Browser
) -> None:
    page, errors = await open_page(web, net.url)
    await expect(page.locator("#stat-workers")).to_have_text(re.compile(r"^[1-9]"))  # live /api/stats
    await send(page, "Explain how ashao routes a prompt.")
    reply = page.locator("li.message.assistant")
    await expect(reply).to_have_attribute("data-state", "streaming")
    for n in range(1, TOKENS + 1):
        step.release()
        await expect(reply).to_have_text(answer(n).strip())  # this token, and none after it yet
        if n < TOKENS:
            await expect(reply).to_have_attribute("data-state", "streaming")
    await expect(reply).to_have_attribute("data-state", "done")
    assert await reply.text_content() == answer(TOKENS)
    # one EventSource for the answer, closed by the page on the done event
    assert await page.evaluate("openedSources.map((s) => s.readyState)") == [2]
    assert await page.evaluate("JSON.parse(sessionStorage.getItem('ashao.chat')).job") is None
    # without a wallet in the browser, sign-in says what is missing
    await page.click("#sign-in")
    await expect(page.locator("#wallet-error")).to_contain_text("No Solana wallet found")
    assert errors == [] and web.blocked == []


async def test_a_reload_mid_answer_resumes_after_the_last_event_seen(
    net: LiveNet, step: StepBackend, web: Browser
) -> None:
    page, errors = await open_page(web, net.url)
    await send(page, "Count for me.")
    reply = page.locator("li.message.assistant")
    step.release(3)
    await expect(reply).to_have_text(answer(3).strip())
    saved = await page.evaluate("JSON.parse(sessionStorage.getItem('ashao.chat'))")
    job_id, seen = saved["job"]["id"], saved["job"]["lastEventId"]
    assert saved["job"]["text"] == answer(3) and int(seen) > 0

    async def produced(tokens: int) -> bool:
        r = await net.stack.http.get(f"/api/jobs/{job_id}")
        return bool(r.json()["job"]["tokens"] >= tokens)

    reopened: list[str] = []

    async def while_away(route: Route) -> None:
        """The reloaded page's stream waits until two more tokens were produced with no page there."""
        reopened.append(route.request.url)
        if len(reopened) == 1:
            step.release(2)
            await eventually_async(lambda: produced(5))
        await route.continue_()

    await page.route("**/api/chat/stream?*", while_away)
    await page.reload()
    await ready(page)
    await expect(reply).to_have_text(answer(5).strip())
    assert parse_qs(urlsplit(reopened[0]).query) == {"jobId": [job_id], "lastEventId": [seen]}
    step.release(TOKENS - 5)
    await expect(reply).to_have_attribute("data-state", "done")
    assert await reply.text_content() == answer(TOKENS)  # nothing twice, nothing lost
    assert len(reopened) == 1
    # once complete, the answer is the conversation's: another reload shows it from the store
    await page.reload()
    await ready(page)
    await expect(page.locator("li.message")).to_have_count(2)
    assert await page.locator("li.message.assistant").text_content() == answer(TOKENS)
    assert len(reopened) == 1  # and opens no stream
    assert errors == [] and web.blocked == []


async def test_a_wallet_signs_in_from_the_page_and_out_again(net: LiveNet, web: Browser) -> None:
    key, address = wallet_key()
    await web.context.add_init_script(injected_wallet(key))
    page, errors = await open_page(web, net.url)
    await expect(page.locator("#sign-out")).to_be_hidden()
    await sign_in(web, page, address)
    await expect(page.locator("#who")).to_have_text(f"{address[:4]}…{address[-4:]}")
    await expect(page.locator("#credits")).to_have_text(str(SIGNUP_GRANT))
    cookie = {c["name"]: c for c in await web.context.cookies()}["ashao_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    session = {"Cookie": f"ashao_session={cookie['value']}"}
    me = await net.stack.http.get("/api/auth/me", headers=session)
    assert me.status_code == 200 and me.json()["user"]["address"] == address

    await page.click("#sign-out")
    await expect(page.locator("#sign-in")).to_be_visible()
    await expect(page.locator("#credits")).to_have_text("\u2013")  # the dash of no figure
    assert "ashao_session" not in {c["name"] for c in await web.context.cookies()}
    assert (await net.stack.http.get("/api/auth/me", headers=session)).status_code == 401
    assert errors == [] and web.blocked == []


async def test_a_signed_in_user_generates_an_image_and_stakes(net: LiveNet, web: Browser) -> None:
    key, address = wallet_key()
    await web.context.add_init_script(injected_wallet(key))
    page, errors = await open_page(web, net.url)
    await sign_in(web, page, address)
    prompt = "a violet aurora over a quiet network of cities"
    await page.fill("#image-prompt", prompt)
    await page.select_option("#image-style", "Watercolor")
    await page.click("#generate")
    image = page.locator("#image")
    await expect(image).to_have_attribute("src", re.compile(r"^/api/images/img_"))
    await expect(page.locator("#image-caption")).to_have_text(f"{prompt} · Watercolor, Landscape")
    await expect(image).to_have_js_property("naturalWidth", 2)  # the worker's 2x2 PNG, loaded
    left = SIGNUP_GRANT - TIERS["image"].credit_cost
    await expect(page.locator("#credits")).to_have_text(str(left))

    await page.fill("#stake-amount", "10")
    await page.click("#stake")
    await expect(page.locator("#s-staked")).to_have_text("10")
    await expect(page.locator("#s-balance")).to_have_text(str(left - 10))
    await page.fill("#stake-amount", "4")
    await page.click("#unstake")
    await expect(page.locator("#s-staked")).to_have_text("6")
    await expect(page.locator("#credits")).to_have_text(str(left - 6))
    await page.fill("#stake-amount", "100000")
    await page.click("#stake")
    await expect(page.locator("#staking-error")).to_contain_text("amount: more than your balance")
    await expect(page.locator("#s-staked")).to_have_text("6")
    assert errors == [] and web.blocked == []


LINE_PIXELS = """() => {
  const c = document.getElementById("treasury-chart");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] === 167 && d[i + 1] === 139 && d[i + 2] === 250) n++;
  return n;
}"""
"""How many pixels of the chart are the line's colour (#a78bfa)."""


async def test_the_treasury_chart_draws_the_snapshot_series(tmp_path: Path, web: Browser) -> None:
    async with live_network(tmp_path, snapshot_interval_s=0.05) as net:

        async def snapshots() -> bool:
            return len((await net.stack.http.get("/api/treasury")).json()["series"]) >= 3

        await eventually_async(snapshots)
        page, errors = await open_page(web, net.url)
        treasury = (await net.stack.http.get("/api/treasury")).json()
        await expect(page.locator("#t-supply")).to_have_text(f"{treasury['circulatingSupply']:,}")
        assert await page.evaluate(LINE_PIXELS) > 100
        await page.select_option("#t-metric", "price")
        assert await page.evaluate(LINE_PIXELS) > 100
        assert errors == [] and web.blocked == []


async def test_the_api_reference_renders_with_nothing_reachable_but_the_facade(
    net: LiveNet, web: Browser
) -> None:
    page = await web.context.new_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    await page.goto(f"{net.url}/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("ashao")
    operations = page.locator(".opblock")
    await expect(operations.first).to_be_visible()
    assert await operations.count() > 30
    await page.locator(".opblock-summary", has_text="/api/chat/send").first.click()
    await expect(page.locator(".opblock-body").first).to_contain_text("conversationId")
    assert f"{net.url}/openapi.json" in requested
    assert f"{net.url}/docs/ui/swagger-ui-bundle.js" in requested
    assert web.blocked == []

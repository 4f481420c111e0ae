"""Take the README's screenshot of the web page: ``python -m tests.facade.webpage_screenshot [PATH]``
(``docs/screenshot.png`` by default).

It starts the same network on loopback as the browser tests (the synthetic chat backend, a picture
drawn here instead of by a model), lets some paid traffic build a treasury series, then signs a wallet
in through the page, asks a question, draws a picture and stakes, and photographs the page in
headless Chromium. Nothing is reached but loopback.
"""

from __future__ import annotations

import asyncio
import math
import sys
import tempfile
from pathlib import Path

from playwright.async_api import expect

from tests.helpers.browser import CHROMIUM, browser, injected_wallet, wallet_key
from tests.helpers.images import encode_png
from tests.helpers.livenet import LiveNet, live_network

ROUNDS = 12
"""Treasury snapshots taken while the traffic runs (each after a few paid answers)."""


class AuroraBackend:
    """Draws a violet-and-green aurora over a night sky, whatever the prompt."""

    async def generate(
        self, *, prompt: str, style: str, width: int, height: int, nsfw: bool
    ) -> tuple[bytes, str]:
        w, h = 480, 270
        rgb = bytearray()
        for y in range(h):
            for x in range(w):
                u, v = x / w, y / h
                band = math.exp(-(((v - 0.38 - 0.12 * math.sin(u * 6.0)) / 0.09) ** 2))
                glow = math.exp(-(((v - 0.55 - 0.08 * math.sin(u * 4.0 + 1.3)) / 0.14) ** 2))
                city = 1.0 if v > 0.9 - 0.03 * math.sin(u * 40.0) ** 2 else 0.0
                rgb += bytes(
                    (
                        min(255, int(12 + 150 * glow + 40 * band)),
                        min(255, int(14 + 210 * band + 30 * glow)),
                        min(255, int(40 + 60 * v + 170 * glow + 60 * band)) if not city else 18,
                    )
                )
        return encode_png(w, h, bytes(rgb)), "image/png"

    async def aclose(self) -> None:
        return None


async def traffic(net: LiveNet) -> None:
    """Paid answers between snapshots, so the treasury chart has a rising series to show."""
    user = {"Authorization": f"Bearer {net.user_token}"}
    http = net.stack.http
    for i in range(ROUNDS):
        before = len((await http.get("/api/treasury")).json()["series"])
        for _ in range(i % 4 + 1):
            r = await http.post("/api/chat/send", json={"tier": "ultra", "content": "hello"}, headers=user)
            r.raise_for_status()
        for _ in range(500):  # bounded: the next snapshot comes within a second
            if len((await http.get("/api/treasury")).json()["series"]) > before:
                break
            await asyncio.sleep(0.01)


async def shoot(path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with live_network(Path(tmp), image_backend=AuroraBackend(), snapshot_interval_s=0.3) as net:
            await traffic(net)
            async with browser() as web:
                key, address = wallet_key()
                await web.context.add_init_script(injected_wallet(key))
                page = await web.context.new_page()
                await page.goto(net.url)
                await expect(page.locator("body")).to_have_attribute("data-ready", "true")
                await page.click("#sign-in")
                await expect(page.locator("#who")).to_have_attribute("title", address)
                await page.select_option("#tier", "pro")
                await page.fill("#prompt", "Explain how ashao routes a prompt.")
                await page.click("#send")
                await expect(page.locator("li.message.assistant")).to_have_attribute("data-state", "done")
                await page.fill("#image-prompt", "a violet aurora over a quiet network of cities")
                await page.click("#generate")
                await expect(page.locator("#image")).to_have_js_property("naturalWidth", 480)
                await page.fill("#stake-amount", "25")
                await page.click("#stake")
                await expect(page.locator("#s-staked")).to_have_text("25")
                await page.fill("#prompt", "")
                await page.evaluate("document.activeElement.blur()")
                await page.screenshot(path=str(path), full_page=True)
                assert web.blocked == [], web.blocked
    print(f"wrote {path}")


def main() -> int:
    if CHROMIUM is None:
        print("Chromium is not installed (Debian: apt-get install chromium)", file=sys.stderr)
        return 1
    asyncio.run(shoot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshot.png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

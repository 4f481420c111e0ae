"""Headless Chromium driven by Playwright, for the tests of the web page.

The browser is the system's Chromium (Debian's ``chromium`` package), never one downloaded at test
time; the tests that need it are skipped, saying so, where it is not installed. Every page may reach
the loopback address only: any other request is aborted and recorded, so a test can assert that the
page (or the API reference) needed nothing from outside.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from nacl.signing import SigningKey
from playwright.async_api import BrowserContext, Route, async_playwright

from ashao_common.base58 import b58encode

CHROMIUM = (
    os.environ.get("ASHAO_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
)
"""The Chromium binary the browser tests drive (``ASHAO_TEST_CHROMIUM`` names another one)."""

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (Debian: apt-get install chromium; or set ASHAO_TEST_CHROMIUM)",
)

LOOPBACK = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})

_PKCS8_ED25519 = bytes.fromhex("302e020100300506032b657004220420")
"""The DER prefix of a PKCS#8 Ed25519 private key; the 32-byte seed follows it."""


@dataclass
class Browser:
    """A browser context whose requests stay on loopback."""

    context: BrowserContext
    blocked: list[str] = field(default_factory=list)
    """Every URL a page asked for off loopback (and did not get)."""


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    """A fresh headless Chromium context (a desktop-sized viewport), closed at the end."""
    assert CHROMIUM is not None
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = await chromium.new_context(viewport={"width": 1280, "height": 860})
            context.set_default_timeout(15_000)
            b = Browser(context)

            async def loopback_only(route: Route) -> None:
                url = route.request.url
                if urlsplit(url).hostname in LOOPBACK:
                    await route.fallback()
                else:
                    b.blocked.append(url)
                    await route.abort("blockedbyclient")

            await context.route("**/*", loopback_only)
            yield b
            await context.close()
        finally:
            await chromium.close()


def wallet_key() -> tuple[SigningKey, str]:
    """A new Ed25519 wallet key and its address (the base58 public key)."""
    key = SigningKey.generate()
    return key, b58encode(bytes(key.verify_key))


def injected_wallet(key: SigningKey) -> str:
    """A script defining ``window.solana`` as a Solana wallet extension does, holding ``key``: its
    ``connect()`` shares the address, its ``signMessage(bytes, "utf8")`` signs the bytes with WebCrypto's
    Ed25519 in the page (the key never leaves it). For ``BrowserContext.add_init_script``."""
    address = b58encode(bytes(key.verify_key))
    der = base64.b64encode(_PKCS8_ED25519 + bytes(key)).decode()
    return f"""(() => {{
  const address = "{address}";
  const der = Uint8Array.from(atob("{der}"), (c) => c.charCodeAt(0));
  const publicKey = {{ toString: () => address, toBase58: () => address }};
  let key = null;
  window.solana = {{
    isConnected: false,
    publicKey: null,
    async connect() {{
      this.isConnected = true;
      this.publicKey = publicKey;
      return {{ publicKey }};
    }},
    async disconnect() {{
      this.isConnected = false;
      this.publicKey = null;
    }},
    async signMessage(bytes, display) {{
      key ??= await crypto.subtle.importKey("pkcs8", der, {{ name: "Ed25519" }}, false, ["sign"]);
      const signature = new Uint8Array(await crypto.subtle.sign("Ed25519", key, bytes));
      return {{ signature, publicKey }};
    }},
  }};
}})();"""

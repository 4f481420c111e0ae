"""Wallet sign-in over the facade's HTTP API, as a browser does it."""

from __future__ import annotations

import httpx
from nacl.signing import SigningKey

from ashao_common.base58 import b58encode


async def sign_in_over_http(http: httpx.AsyncClient, cookie: str = "ashao_session") -> tuple[str, str]:
    """A new wallet signs in through ``http``: (user id, session token)."""
    key = SigningKey.generate()
    address = b58encode(bytes(key.verify_key))
    r = await http.get("/api/auth/nonce", params={"address": address})
    assert r.status_code == 200, r.text
    message = r.json()["message"]
    signature = b58encode(key.sign(message.encode()).signature)
    r = await http.post(
        "/api/auth/verify", json={"address": address, "message": message, "signature": signature}
    )
    assert r.status_code == 200, r.text
    return str(r.json()["user"]["id"]), str(r.cookies[cookie])

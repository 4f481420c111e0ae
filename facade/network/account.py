"""Wallet sign-in (Sign-In-with-Solana), the session cookie, API keys, and the caller's credits."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import Field
from starlette.responses import Response

from ashao.v1 import account_pb2
from facade.client import Core
from facade.http import JSON, call_metadata, is_https
from facade.network.errors import NetworkRoute, errors
from facade.validation import Body, Text

router = APIRouter(route_class=NetworkRoute, tags=["account"])


class VerifyBody(Body):
    """A signed sign-in message."""

    address: Text = Field(description="The wallet's base58 Ed25519 public key.")
    message: Text = Field(description="The message from /api/auth/nonce, exactly as issued.")
    signature: Text = Field(description="Ed25519 signature of the message's UTF-8 bytes, base58 or base64.")


class KeyBody(Body):
    """A new API key."""

    name: Text = Field(default="", description="A label.")


_NO_NAME = KeyBody()


def _user(u: account_pb2.User) -> dict[str, Any]:
    return {"id": u.id, "address": u.address, "createdAt": u.created_at_ms}


def _key(k: account_pb2.ApiKey) -> dict[str, Any]:
    return {"id": k.id, "name": k.name, "createdAt": k.created_at_ms, "revokedAt": k.revoked_at_ms or None}


@router.get("/api/auth/nonce", responses=errors(400))
async def nonce(
    address: Annotated[str, Query(description="The wallet's base58 Ed25519 public key.")],
    request: Request,
    core: Core,
) -> Response:
    """The exact Sign-In-with-Solana message for `address` to sign, with its single-use nonce."""
    r = await core.accounts.GetSignInMessage(
        account_pb2.GetSignInMessageRequest(address=address),
        metadata=call_metadata(request, core.settings, token=""),
        timeout=core.timeout,
    )
    return JSON({"message": r.message, "nonce": r.nonce, "expiresAt": r.expires_at_ms})


@router.post("/api/auth/verify", responses=errors(400, 401))
async def verify(body: VerifyBody, request: Request, core: Core) -> Response:
    """Check the signed message (every field, the nonce once) and set the session cookie
    (HttpOnly, SameSite=Lax, Secure over HTTPS, bounded lifetime). 401 `{error}` says what was wrong."""
    r = await core.accounts.SignIn(
        account_pb2.SignInRequest(address=body.address, message=body.message, signature=body.signature),
        metadata=call_metadata(request, core.settings, token=""),
        timeout=core.timeout,
    )
    response = JSON({"user": _user(r.user), "expiresAt": r.expires_at_ms})
    response.set_cookie(
        core.settings.session_cookie,
        r.session_token,
        max_age=max(1, int(r.expires_at_ms / 1000 - time.time())),
        path="/",
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )
    return response


@router.post("/api/auth/logout", responses=errors(401))
async def logout(request: Request, core: Core) -> Response:
    """End the session and clear its cookie."""
    session = request.cookies.get(core.settings.session_cookie, "")
    if session:
        await core.accounts.SignOut(
            account_pb2.SignOutRequest(),
            metadata=call_metadata(request, core.settings, token=session),
            timeout=core.timeout,
        )
    response = JSON({"ok": True})
    response.delete_cookie(
        core.settings.session_cookie,
        path="/",
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )
    return response


@router.get("/api/auth/me", responses=errors(401))
async def me(request: Request, core: Core) -> Response:
    """Who you are: `{user: {id, address}, credits}`; 401 `{error}` when not signed in."""
    r = await core.accounts.WhoAmI(
        account_pb2.WhoAmIRequest(), metadata=call_metadata(request, core.settings), timeout=core.timeout
    )
    return JSON({"user": _user(r.user), "credits": r.credits})


@router.get("/api/credits", responses=errors(401))
async def credits(request: Request, core: Core) -> Response:
    """The signed-in user's credit balance: `{credits}`."""
    r = await core.accounts.GetCredits(
        account_pb2.GetCreditsRequest(), metadata=call_metadata(request, core.settings), timeout=core.timeout
    )
    return JSON({"credits": r.credits})


@router.post("/api/keys", responses=errors(400, 401))
async def create_key(request: Request, core: Core, body: KeyBody = _NO_NAME) -> Response:
    """Create a bearer API key for programmatic clients: `{key, secret}` (the secret is shown once).
    The body is optional."""
    r = await core.accounts.CreateApiKey(
        account_pb2.CreateApiKeyRequest(name=body.name),
        metadata=call_metadata(request, core.settings),
        timeout=core.timeout,
    )
    return JSON({"key": _key(r.key), "secret": r.secret})


@router.get("/api/keys", responses=errors(401))
async def list_keys(request: Request, core: Core) -> Response:
    """Your API keys, newest first (never their secrets)."""
    r = await core.accounts.ListApiKeys(
        account_pb2.ListApiKeysRequest(), metadata=call_metadata(request, core.settings), timeout=core.timeout
    )
    return JSON({"keys": [_key(k) for k in r.keys]})


@router.delete("/api/keys/{key_id}", responses=errors(401, 404))
async def revoke_key(key_id: str, request: Request, core: Core) -> Response:
    """Revoke one of your API keys."""
    await core.accounts.RevokeApiKey(
        account_pb2.RevokeApiKeyRequest(key_id=key_id),
        metadata=call_metadata(request, core.settings),
        timeout=core.timeout,
    )
    return JSON({"ok": True})

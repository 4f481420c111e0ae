"""Retried sends are safe: the same Idempotency-Key returns the first send, charged once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from ashao.v1 import account_pb2, chat_pb2
from core.economics import SIGNUP_GRANT, TIERS
from tests.helpers.core import Core, core_settings, start_core, stop_core

pytestmark = pytest.mark.timeout(30)


def _send(content: str, key: str, tier: str = "pro") -> chat_pb2.SendMessageRequest:
    return chat_pb2.SendMessageRequest(tier=tier, content=content, idempotency_key=key)


async def _credits(core: Core, md: object) -> int:
    return (await core.accounts.GetCredits(account_pb2.GetCreditsRequest(), metadata=md)).credits  # type: ignore[arg-type]


async def test_a_repeated_send_is_the_first_one(tmp_path: Path) -> None:
    core = await start_core(core_settings(tmp_path))
    try:
        md = await core.sign_in()
        first = await core.chat.SendMessage(_send("hello", "k-1"), metadata=md)
        again = await core.chat.SendMessage(_send("hello", "k-1"), metadata=md)
        assert (again.job_id, again.conversation_id) == (first.job_id, first.conversation_id)
        assert await _credits(core, md) == SIGNUP_GRANT - TIERS["pro"].credit_cost  # charged once
        assert core.app.jobs.snapshot().queue_depth == 1
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await core.chat.SendMessage(_send("something else", "k-1"), metadata=md)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "idempotencyKey" in (info.value.details() or "")
        # another caller's key is its own
        other = await core.sign_in()
        theirs = await core.chat.SendMessage(_send("hello", "k-1"), metadata=other)
        assert theirs.job_id != first.job_id
    finally:
        await stop_core(core)
    core = await start_core(core_settings(tmp_path))
    try:  # the key outlives a restart
        again = await core.chat.SendMessage(_send("hello", "k-1"), metadata=md)
        assert again.job_id == first.job_id
    finally:
        await stop_core(core)


async def test_concurrent_repeats_make_one_job(core: Core) -> None:
    md = await core.sign_in()
    results = await asyncio.gather(
        *(core.chat.SendMessage(_send("x", "same"), metadata=md) for _ in range(20))
    )
    assert len({r.job_id for r in results}) == 1
    assert await _credits(core, md) == SIGNUP_GRANT - TIERS["pro"].credit_cost


async def test_an_overlong_key_is_refused(core: Core) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await core.chat.SendMessage(_send("x", "k" * 129, tier="free"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT

"""Stateless sends (as OpenAI-style clients make them) through a real core: a model name for the tier,
the whole conversation, a token budget, a temperature and stop sequences reach the worker, on the push
and the pull path, and survive a restart; bad ones are refused naming the field, persisting nothing."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import grpc
import pytest

from ashao.v1 import chat_pb2, common_pb2, worker_pb2
from core.economics import TIERS
from tests.helpers.core import Core, connect_worker, core_settings, start_core, stop_core
from tests.helpers.wait import eventually_async

pytestmark = pytest.mark.timeout(30)

CONVERSATION = [("system", "Be terse."), ("user", "Hi."), ("assistant", "Hello."), ("user", "Again?")]


def stateless(**changes: Any) -> chat_pb2.SendMessageRequest:
    fields: dict[str, Any] = {
        "model": "ashao-free",
        "messages": [common_pb2.ChatMessage(role=r, content=c) for r, c in CONVERSATION],
        "max_tokens": 9,
        "temperature": 0.5,
        "stop": ["END"],
        **changes,
    }
    return chat_pb2.SendMessageRequest(**fields)


async def test_a_stateless_send_carries_its_conversation_and_options(core: Core) -> None:
    worker = await connect_worker(core)
    r = await core.chat.SendMessage(stateless())
    assert r.max_tokens == 9
    assert r.prompt_tokens == sum(math.ceil(len(c) / 4) + 4 for _, c in CONVERSATION)
    a = await worker.assignment()
    assert a.job_id == r.job_id and (a.tier, a.model) == ("free", "ashao-free")
    assert [(m.role, m.content) for m in a.messages] == CONVERSATION
    assert (a.max_tokens, a.temperature, list(a.stop)) == (9, 0.5, ["END"])
    await worker.tokens(a.job_id, ["Yes."])
    await worker.complete(a.job_id)

    async def stored() -> bool:
        conversation = await core.chat.GetConversation(
            chat_pb2.GetConversationRequest(conversation_id=r.conversation_id)
        )
        return [(m.role, m.content) for m in conversation.messages] == [*CONVERSATION, ("assistant", "Yes.")]

    # The completion is stored after the worker's message is read: wait for it, not for a time.
    await eventually_async(stored)
    # Without a budget the tier's maximum applies; without a temperature the worker is told none.
    r = await core.chat.SendMessage(stateless(max_tokens=0, temperature=None, stop=[]))
    a = await worker.assignment()
    assert r.max_tokens == TIERS["free"].max_tokens == a.max_tokens
    assert not a.HasField("temperature") and list(a.stop) == []


async def test_the_pull_path_gets_the_options_too(core: Core) -> None:
    _, token = await core.register(slots=1, tiers=("basic",))
    user = await core.sign_in(credits=10)
    await core.chat.SendMessage(stateless(model="ashao-basic", temperature=0.0), metadata=user)
    claimed = await core.workers.ClaimJob(
        worker_pb2.ClaimJobRequest(tier="basic"), metadata=(("authorization", f"Bearer {token}"),)
    )
    assert claimed.job.model == "ashao-basic"
    assert [(m.role, m.content) for m in claimed.messages] == CONVERSATION
    assert (claimed.max_tokens, claimed.HasField("temperature"), claimed.temperature) == (9, True, 0.0)
    assert list(claimed.stop) == ["END"]


async def test_the_options_survive_a_restart(tmp_path: Path) -> None:
    settings = core_settings(tmp_path)
    c = await start_core(settings)
    r = await c.chat.SendMessage(stateless(temperature=1.25, stop=["a", "b"]))
    await stop_core(c)
    c = await start_core(settings)
    try:
        worker = await connect_worker(c)
        a = await worker.assignment()
        assert a.job_id == r.job_id and [(m.role, m.content) for m in a.messages] == CONVERSATION
        assert (a.max_tokens, a.temperature, list(a.stop)) == (9, 1.25, ["a", "b"])
    finally:
        await stop_core(c)


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"model": "gpt-4o"}, grpc.StatusCode.NOT_FOUND, "model"),
        ({"model": "ashao-image"}, grpc.StatusCode.INVALID_ARGUMENT, "model"),
        ({"content": "also this"}, grpc.StatusCode.INVALID_ARGUMENT, "content"),
        ({"conversation_id": "conv_abcdefgh12345678"}, grpc.StatusCode.INVALID_ARGUMENT, "conversationId"),
        ({"messages": [common_pb2.ChatMessage(role="tool", content="x")]}, None, "messages[0].role"),
        (
            {"messages": [common_pb2.ChatMessage(role="user", content="x" * 40_000)]},
            None,
            "messages[0].content",
        ),
        ({"messages": [common_pb2.ChatMessage(role="user", content=" ")]}, None, "messages[0].content"),
        ({"messages": [common_pb2.ChatMessage(role="user", content="x")] * 201}, None, "messages"),
        ({"max_tokens": TIERS["free"].max_tokens + 1}, None, "max_tokens"),
        ({"temperature": 2.5}, None, "temperature"),
        ({"temperature": math.nan}, None, "temperature"),
        ({"stop": ["a", "b", "c", "d", "e"]}, None, "stop"),
        ({"stop": [""]}, None, "stop"),
        ({"stop": ["x" * 257]}, None, "stop"),
    ],
)
async def test_a_bad_stateless_send_names_the_field_and_persists_nothing(
    core: Core, changes: dict[str, Any], code: grpc.StatusCode | None, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await core.chat.SendMessage(stateless(**changes))
    assert info.value.code() == (code or grpc.StatusCode.INVALID_ARGUMENT)
    assert (info.value.details() or "").startswith(field + ":"), info.value.details()
    rows = await core.app.store.fetchall(
        "SELECT COUNT(*) FROM jobs UNION ALL SELECT COUNT(*) FROM messages UNION ALL SELECT COUNT(*) FROM conversations"
    )
    assert rows == [(0,), (0,), (0,)]


async def test_the_last_message_must_be_the_users(core: Core) -> None:
    ends_with_answer = [common_pb2.ChatMessage(role=r, content=c) for r, c in CONVERSATION[:3]]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await core.chat.SendMessage(stateless(messages=ends_with_answer))
    assert (info.value.details() or "").startswith("messages[2].role:")


async def test_an_idempotency_key_binds_the_whole_request(core: Core) -> None:
    first = await core.chat.SendMessage(stateless(idempotency_key="k"))
    again = await core.chat.SendMessage(stateless(idempotency_key="k"))
    assert (again.job_id, again.conversation_id, again.max_tokens) == (
        first.job_id,
        first.conversation_id,
        first.max_tokens,
    )
    for changed in ({"temperature": 0.6}, {"stop": ["FIN"]}, {"max_tokens": 8}, {"messages": []}):
        request = stateless(idempotency_key="k", **changed)
        if not request.messages:
            request.content = "Again?"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await core.chat.SendMessage(request)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION, changed
    assert core.app.jobs.snapshot().queue_depth == 1

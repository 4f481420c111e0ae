"""The Node client, generated from proto/ by buf, chats with a real core and worker over plain gRPC."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.agents import agent_settings, running
from tests.helpers.core import Core, core_settings, start_core, stop_core
from tests.helpers.tools import ROOT, buf_or_skip, node_or_skip, run

TOKENS = 12


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    c = await start_core(core_settings(tmp_path))
    try:
        yield c
    finally:
        await stop_core(c)


@pytest.fixture
async def chat_mjs(tmp_path: Path) -> Path:
    """clients/node/chat.mjs beside a client generated afresh from proto/ by the template the Makefile
    uses (so the test never runs a stale client), in a copy of the repository's layout."""
    node_or_skip()
    out = tmp_path / "checkout"
    generated = await run(
        buf_or_skip(), "generate", "--template", "clients/node/buf.gen.yaml", "-o", out, timeout=120
    )
    assert generated.code == 0, generated.err
    assert (out / "clients/node/gen/ashao/v1/chat_pb.js").exists()
    shutil.copy(ROOT / "clients/node/chat.mjs", out / "clients/node/chat.mjs")
    shutil.copy(ROOT / "package.json", out / "package.json")
    (out / "node_modules").symlink_to(ROOT / "node_modules", target_is_directory=True)
    return out / "clients/node/chat.mjs"


async def test_a_chat_streams_its_tokens_to_the_node_client(
    core: Core, chat_mjs: Path, tmp_path: Path
) -> None:
    settings = agent_settings(
        tmp_path, core.app.address, synthetic_tokens=TOKENS, join_token=await core.join_token()
    )
    async with running(settings):
        ran = await run(node_or_skip(), chat_mjs, "--core", core.app.address, "hello from node")
        assert ran.code == 0, ran.err
        assert ran.out == "".join(f"tok{i} " for i in range(TOKENS)) + "\n"
        assert f"done: {TOKENS} tokens" in ran.err and "job job_" in ran.err

        # A priced tier with the caller's credential (a session token, as an API key would be).
        session = dict(await core.sign_in(credits=50))["authorization"].removeprefix("Bearer ")
        ran = await run(
            node_or_skip(), chat_mjs, "--core", core.app.address, "--tier", "pro", "--api-key", session, "hi"
        )
        assert ran.code == 0, ran.err
        assert ran.out.startswith("tok0 tok1 ")


async def test_refusals_and_usage_errors_are_reported(core: Core, chat_mjs: Path) -> None:
    ran = await run(node_or_skip(), chat_mjs, "--core", core.app.address, "--tier", "pro", "hi")
    assert ran.code == 1 and "error: Unauthenticated:" in ran.err, ran.err
    ran = await run(node_or_skip(), chat_mjs, "--core", core.app.address, "--tier", "gold", "hi")
    assert ran.code == 1 and "error: InvalidArgument: tier:" in ran.err, ran.err
    ran = await run(node_or_skip(), chat_mjs, "--core", core.app.address)
    assert ran.code == 2 and "usage: node clients/node/chat.mjs" in ran.err

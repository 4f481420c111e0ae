"""What the README tells relay clients holds: its signature-checking snippet, run as written against a
live relay, accepts the relay's answers and rejects altered ones; the limits it states are the code's."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from nacl.exceptions import BadSignatureError

from core.config import CoreSettings
from core.relay.envelopes import MAX_MAX_TOKENS, MIN_MAX_TOKENS
from tests.facade.test_relay_api import relay, sse
from tests.helpers.tools import ROOT
from tests.helpers.upstream import FakeUpstream

pytestmark = pytest.mark.timeout(60)

README = (ROOT / "README.md").read_text()


def readme_snippet(after: str) -> str:
    """The first ```python block of the README after the text ``after``."""
    start = README.index(after)
    match = re.search(r"```python\n(.*?)```", README[start:], re.S)
    assert match, f"no python block after {after!r}"
    return match.group(1)


async def test_the_readme_snippet_verifies_relay_answers_and_rejects_altered_ones(tmp_path: Path) -> None:
    code = readme_snippet("**Verifying a signature.**")
    assert 'relay = "http://127.0.0.1:8080"' in code
    async with FakeUpstream(["Signed ", "words", "."]).running() as up, relay(tmp_path, ("hosted", up)) as s:
        ns: dict[str, Any] = {}
        source = code.replace('"http://127.0.0.1:8080"', repr(s.facade.url))
        await asyncio.to_thread(exec, compile(source, "README.md", "exec"), ns)  # it raises if it fails
        r = ns["r"]
        assert r.status_code == 200 and r.json()["text"] == "Signed words."
        key, signature = ns["key"], r.headers["X-Ashao-Signature"]
        with pytest.raises(BadSignatureError):
            key.verify(r.content.replace(b"words", b"w0rds"), ns["base64"].b64decode(signature))

        resp, events = await sse(s.http, {"message": "Hello", "max_tokens": 1024})
        assert resp.status_code == 200 and events[-1]["event"] == "done"
        done = events[-1]["data"]
        ns["verify_event"](done)  # raises if the envelope does not verify
        done["envelope"]["text"] += "!"
        with pytest.raises(BadSignatureError):
            ns["verify_event"](done)


def test_the_limits_the_readme_states_are_the_codes() -> None:
    core = CoreSettings.model_fields
    limits = README[README.index("**Limits.**") :][:1200]
    assert f"`max_tokens` is {MIN_MAX_TOKENS} (the default) to {MAX_MAX_TOKENS:,}" in limits
    for name in ("burst_per_principal", "rate_per_principal", "burst_per_ip", "rate_per_ip"):
        default = core[f"relay_{name}"].default
        assert f"`RELAY_{name.upper()}` ({default:g})" in limits, name
    assert core["relay_daily_quota"].default == 0
    assert f"`RELAY_MAX_MESSAGE_CHARS` ({core['relay_max_message_chars'].default:,})" in limits

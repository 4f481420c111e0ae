"""Schemathesis against the live facade: every operation of /openapi.json, with generated valid and
invalid input, answers no 5xx, no status its operation does not document, and no body (JSON, or event
of a stream) that breaks its documented schema.

A real core, the facade as its trusted relay and a worker agent (chat and images) run on loopback; the
run is derandomized with a fixed example budget, so it asks the same questions every time. It is done
three times: anonymously over everything, as a signed-in user (with credits) over the user's routes,
and as a pull worker over the worker routes.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from tests.helpers.livenet import live_network

pytestmark = pytest.mark.timeout(240)

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "unsupported_method",  # an undocumented method is 405 naming the allowed ones...
        "allow_header_conformance",  # ...exactly those the document lists
    ]
)
EXAMPLES = 40
"""Generated cases per operation and phase (the coverage phase adds its boundary cases to them)."""
RUN_TIMEOUT_S = 150


async def schemathesis(url: str, cwd: Path, *args: str) -> tuple[int, str]:
    """One derandomized ``schemathesis run`` against ``url``: (exit code, report)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/openapi.json",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(EXAMPLES),
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-color",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            out, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode if process.returncode is not None else -1, out.decode(errors="replace")


async def test_the_facade_answers_only_what_its_openapi_document_says(tmp_path: Path) -> None:
    async with live_network(tmp_path) as net:
        runs = {
            "anonymous": (),
            "user": (
                "-H",
                f"Authorization: Bearer {net.user_token}",
                "--exclude-path-regex",
                "^/api/worker/",
            ),
            "worker": (
                "-H",
                f"Authorization: Bearer {net.worker_token}",
                "--include-path-regex",
                "^/api/worker/",
            ),
        }
        for who, args in runs.items():
            code, report = await schemathesis(net.url, tmp_path, *args)
            assert code == 0, f"schemathesis ({who}) found problems:\n{report[-12000:]}"
            # (a count such as "1580 generated" is not "0 generated")
            assert " passed" in report and not re.search(r"\b0 generated", report), report[-2000:]

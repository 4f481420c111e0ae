"""Command-line tools some tests drive (buf, node), found where ``make`` installs them, and subprocesses
run without blocking the event loop a core or facade of the test serves on."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
"""The repository's root."""
NODE_BIN = ROOT / "node_modules" / ".bin"


def buf_or_skip() -> Path:
    """The buf that ``npm install`` (``make proto-check``) put in node_modules; skips the test without it."""
    buf = NODE_BIN / "buf"
    if not buf.exists():
        pytest.skip(
            "buf is not installed: run `npm install` (make proto-check does) to get node_modules/.bin/buf"
        )
    return buf


def node_or_skip() -> str:
    """The ``node`` program with this project's npm packages installed; skips the test otherwise."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (the Node client needs Node.js 18 or later)")
    if not (ROOT / "node_modules" / "@connectrpc" / "connect-node").exists():
        pytest.skip("the Node client's packages are not installed: run `npm install`")
    return node


@dataclass(frozen=True, slots=True)
class Ran:
    """What a finished program did."""

    code: int
    out: str
    err: str


async def run(*args: str | Path, timeout: float = 60.0, cwd: Path = ROOT) -> Ran:
    """Run a program to its end (killed after ``timeout`` seconds) without blocking the event loop."""
    proc = await asyncio.create_subprocess_exec(
        *map(str, args), cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{args[0]} did not finish within {timeout} s") from None
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())

"""Switching the store of a core process on and off: the fault hook in ``tests/helpers/storehook``.

``hook_env(control)`` is the environment that loads the hook into the processes of a network;
``failing(control, p)`` makes the core's write transactions fail with probability ``p`` for a block.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

HOOK_DIR = Path(__file__).parent / "storehook"


def hook_env(control: Path) -> dict[str, str]:
    """Environment for processes that should obey ``control`` (only the core opens a store)."""
    path = os.pathsep.join(p for p in (str(HOOK_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "ASHAO_TEST_STORE_FAULTS": str(control)}


def arm(control: Path, probability: float) -> None:
    """Write transactions fail with ``probability`` from now on."""
    tmp = control.with_suffix(".tmp")
    tmp.write_text(f"{probability}\n")
    tmp.replace(control)


def disarm(control: Path) -> None:
    """Writes succeed again."""
    control.unlink(missing_ok=True)


def injected(control: Path) -> int:
    """How many write transactions were made to fail so far."""
    try:
        return len(Path(str(control) + ".log").read_text().splitlines())
    except FileNotFoundError:
        return 0


@contextlib.contextmanager
def failing(control: Path, probability: float) -> Iterator[None]:
    """Write transactions fail with ``probability`` for the block; never past it."""
    arm(control, probability)
    try:
        yield
    finally:
        disarm(control)

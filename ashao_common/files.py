"""Files that must survive a crash whole and never be readable by others: keys, tokens, credentials."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_secret(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, owner-only (0600), and durably.

    The bytes go to a temporary file created 0600 in the same directory (so they are never readable by
    others, not even briefly), which is fsynced and renamed over ``path``; the directory is fsynced so
    the rename itself survives a power cut. A crash leaves either the old file or the new one whole.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_or_create_secret(path: Path, create: bytes) -> bytes:
    """The bytes in ``path``; if it does not exist yet, ``create`` written there with :func:`write_secret`."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        write_secret(path, create)
        return create

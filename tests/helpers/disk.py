"""A small disk of its own for a data directory (a tmpfs mount), and filling it up.

Mounting needs root (CAP_SYS_ADMIN); where it is refused, ``tmpfs`` raises ``CannotMount`` with the
reason, so a test can skip saying why.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path


class CannotMount(Exception):
    """A tmpfs cannot be mounted here."""


@contextlib.contextmanager
def tmpfs(path: Path, *, size_mib: int) -> Iterator[Path]:
    """``path`` is a fresh tmpfs of ``size_mib`` MiB for the block; unmounted after it, whatever happens."""
    if os.name != "posix" or os.geteuid() != 0:
        raise CannotMount("mounting a tmpfs needs root")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        raise CannotMount("no mount(8) here")
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if r.returncode != 0:
        raise CannotMount(f"mount -t tmpfs refused: {r.stderr.strip() or r.returncode}")
    try:
        yield path
    finally:
        r = subprocess.run(["umount", str(path)], capture_output=True, timeout=10, check=False)
        if r.returncode != 0:  # something still holds it open: detach it now, freed when released
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10, check=False)


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still write on ``path``'s file system."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path) -> Path:
    """Take every free byte of ``path``'s file system with one file; returns it (delete it to free)."""
    filler = path / "filler"
    limit = free_bytes(path) + (1 << 20)
    written = 0
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 12):
            chunk = b"\0" * size
            while written < limit:  # bounded: the disk is full long before
                try:
                    n = f.write(chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
                if not n:
                    break
                written += n
    return filler

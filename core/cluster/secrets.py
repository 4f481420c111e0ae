"""The keys every core of a cluster holds alike, shared through the store they share.

A facade presents one relay key to whichever core it reaches, cores present it to each other, the
operator's token must work on every core, and relay responses must verify against one published
signing key. The first core to start proposes the keys in its data directory; every core (that one
included) then takes the stored ones and writes them into its own data directory (0600), so tools on
each machine (``ashao workers``, a facade reading ``relay.token``) find the cluster's keys there.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path

from ashao_common.files import write_secret
from core.store import Store, now_ms

log = logging.getLogger("ashao.core.cluster")

SHARED_FILES = ("operator.token", "relay.token", "ed25519.key")
"""The data directory's files every core must hold alike."""


async def adopt(store: Store, path: Path) -> bool:
    """Make ``path`` hold the cluster's value of its key (proposing its current bytes if the cluster has
    none yet); True if the file changed."""
    local = await asyncio.to_thread(path.read_bytes)
    await store.write(
        [
            (
                "INSERT INTO cluster_secrets (name, value, created_at) VALUES (?,?,?)"
                " ON CONFLICT (name) DO NOTHING",
                (path.name, base64.b64encode(local).decode(), now_ms()),
            )
        ]
    )
    row = await store.fetchone("SELECT value FROM cluster_secrets WHERE name = ?", (path.name,))
    if row is None:  # (written just above; only a concurrent delete could remove it)
        raise RuntimeError(f"the cluster's {path.name} vanished from the store")
    shared = base64.b64decode(str(row[0]))
    if shared == local:
        return False
    await asyncio.to_thread(write_secret, path, shared)
    log.info("took the cluster's %s into %s", path.name, path.parent)
    return True


async def adopt_all(store: Store, data_dir: Path) -> bool:
    """``adopt`` every shared file of ``data_dir`` (they must exist); True if any changed."""
    changed = False
    for name in SHARED_FILES:
        changed = await adopt(store, data_dir / name) or changed
    return changed

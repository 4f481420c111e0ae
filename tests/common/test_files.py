"""Secret files: owner-only from the first byte, whole after a crash, the same helper for every secret."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ashao_common.files import read_or_create_secret, write_secret
from tests.helpers.core import core_settings, start_core, stop_core


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_secret_is_owner_only_and_leaves_no_temporary(tmp_path: Path) -> None:
    old = os.umask(0)  # the most permissive umask: the helper must not depend on it
    try:
        write_secret(tmp_path / "sub" / "key", b"one")
    finally:
        os.umask(old)
    assert (tmp_path / "sub" / "key").read_bytes() == b"one"
    assert _mode(tmp_path / "sub" / "key") == 0o600
    write_secret(tmp_path / "sub" / "key", b"two")
    assert (tmp_path / "sub" / "key").read_bytes() == b"two"
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["key"]


def test_read_or_create_keeps_what_exists(tmp_path: Path) -> None:
    path = tmp_path / "token"
    assert read_or_create_secret(path, b"first") == b"first"
    assert read_or_create_secret(path, b"second") == b"first"
    assert _mode(path) == 0o600


async def test_the_core_writes_its_secrets_owner_only(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        core = await start_core(core_settings(tmp_path))
    finally:
        os.umask(old)
    try:
        data = core.app.settings.data_dir
        assert _mode(data / "operator.token") == 0o600
        assert _mode(data / "ed25519.key") == 0o600
        assert (data / "operator.token").read_text().startswith("op_")
    finally:
        await stop_core(core)

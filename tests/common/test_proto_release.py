"""The released contract (proto/released/) holds: additions pass ``buf breaking``, removals and renames fail.

The same check ``make proto-check`` runs, on copies of proto/ the test changes.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.helpers.tools import ROOT, buf_or_skip, run


def _release() -> Path:
    """The newest released image, as the Makefile picks it."""
    images = sorted(
        (ROOT / "proto" / "released").glob("v*.binpb"),
        key=lambda p: tuple(int(n) for n in re.findall(r"\d+", p.stem)),
    )
    assert images, "proto/released/ holds no released image"
    return images[-1]


def _copy(tmp_path: Path) -> Path:
    """A workspace like the repository's (buf.yaml and proto/) in ``tmp_path``."""
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "proto" / "ashao", tmp_path / "proto" / "ashao")
    return tmp_path / "proto" / "ashao" / "v1" / "network.proto"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


async def _breaking(workspace: Path) -> tuple[int, str]:
    ran = await run(buf_or_skip(), "breaking", "--against", _release(), cwd=workspace)
    return ran.code, ran.out + ran.err


async def test_the_current_contract_is_compatible_with_the_release() -> None:
    code, out = await _breaking(ROOT)
    assert code == 0, out


async def test_an_added_field_passes(tmp_path: Path) -> None:
    network = _copy(tmp_path)
    _edit(
        network,
        "message GetStatsRequest {}",
        "message GetStatsRequest {\n  // A field added later.\n  string since = 99;\n}",
    )
    code, out = await _breaking(tmp_path)
    assert code == 0, out


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ("  uint32 queue_depth = 2;\n", "", 'Previously present field "2" with name "queue_depth"'),
        ("uint32 queue_depth = 2;", "uint32 queue_size = 2;", 'changed name from "queue_depth"'),
        ("uint32 queue_depth = 2;", "uint64 queue_depth = 2;", 'changed type from "uint32"'),
    ],
    ids=["removed", "renamed", "retyped"],
)
async def test_a_removed_renamed_or_retyped_field_fails(
    tmp_path: Path, old: str, new: str, complaint: str
) -> None:
    network = _copy(tmp_path)
    _edit(network, old, new)
    code, out = await _breaking(tmp_path)
    assert code != 0 and complaint in out, out

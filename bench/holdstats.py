"""What the hold benchmark reads besides its clients: collector pause logs and py-spy profiles."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path


def gc_pauses(path: Path, t0: int, t1: int) -> tuple[float, float, int, int]:
    """(longest pause ms, its longest CPU time ms, pauses over 5 ms, collections) logged between ``t0``
    and ``t1`` (ns)."""
    longest, longest_cpu, over, n = 0.0, 0.0, 0, 0
    if not path.exists():
        return float("nan"), float("nan"), 0, 0
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 4 or not t0 <= int(parts[0]) <= t1:
            continue
        ms = int(parts[2]) / 1000
        n += 1
        longest = max(longest, ms)
        longest_cpu = max(longest_cpu, int(parts[3]) / 1000)
        over += ms > 5
    return longest, longest_cpu, over, n


def record_profiles(pids: dict[str, int], seconds: float, out: Path) -> list[subprocess.Popen[bytes]]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    opts = ["-d", str(max(1, int(seconds))), "-r", "200", "-f", "raw", "--nonblocking"]
    return [
        subprocess.Popen(
            [spy, "record", "-p", str(pid), *opts, "-o", str(out / f"{name}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]


def top_frames(path: Path, n: int = 12) -> list[tuple[float, str]]:
    """The frames with the most own time in a py-spy raw (collapsed) profile: (share %, frame)."""
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        leaf = re.sub(r":\d+\)$", ")", stack.rsplit(";", 1)[-1])
        own[leaf] += int(count)
        total += int(count)
    return [(100 * c / max(1, total), f) for f, c in own.most_common(n)]

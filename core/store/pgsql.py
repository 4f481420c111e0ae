"""What the PostgreSQL store changes about SQL written for both engines: ``?`` placeholders become
``$1…$n``, and numbers come back as SQLite returns them.
"""

from __future__ import annotations

import functools
import re

# One token at a time, leftmost first: a string literal ('it''s'), a quoted identifier, a comment, or a
# placeholder. Only the last is rewritten, so a ``?`` inside any of the others is left as written.
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|\?", re.DOTALL)


@functools.lru_cache(maxsize=4096)
def numbered(sql: str) -> str:
    """``sql`` with its ``?`` placeholders numbered ``$1…$n`` in order of appearance (computed once per
    distinct text). The portable subset has no dollar-quoted or backslash-escaped strings, so those are
    not recognised."""
    if "?" not in sql:
        return sql
    count = 0

    def number(m: re.Match[str]) -> str:
        nonlocal count
        if m.group() != "?":
            return m.group()
        count += 1
        return f"${count}"

    return _TOKENS.sub(number, sql)


def number_from_text(text: str) -> int | float:
    """A ``numeric`` value as SQLite would return it: an int when it is whole (``SUM`` and ``COUNT`` of
    integers), else a float (``AVG``). The schema stores no ``numeric`` column, so only aggregates
    produce one."""
    if text.lstrip("-").isdigit():
        return int(text)
    return float(text)  # "2.50", "NaN", "Infinity"

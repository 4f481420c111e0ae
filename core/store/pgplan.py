"""How a group commit's statements go to PostgreSQL: as few runs of one SQL text as order allows.

A batch of units is a sequence of statements of a few kinds (a job's admission, its assignment, its
end...), interleaved as the units came. Sent one by one, each costs a round trip and the server's work of
one command; a run of one SQL text goes as one ``executemany`` (one round trip, rows pipelined). So each
statement joins the latest run of its own text when it may be moved back over everything queued after
that run, and starts a new run otherwise. Rows within a run, and runs, keep the order they had.

A statement may move back over another only if nothing either can see of the other's change depends on
their order. What each statement touches is read from its SQL text: the table it writes (``INSERT
INTO``, ``UPDATE``, ``DELETE FROM``) and every table of the schema its text names; the schema's
foreign keys add the tables a row's check reads. Two statements stay in order when

- they touch a table in common, unless both write one row each of that table, by its primary key, and
  not the same one: an ``INSERT`` whose columns include the key, or an ``UPDATE``/``DELETE`` whose
  ``WHERE`` starts with ``key = ?`` and has no ``OR``, neither naming another table nor a ``SELECT``,
  in a table with no other unique column (whose values two rows could contend for). A serial key is
  not given by the statement, so inserts into the ledger or messages keep their order (and numbers);
- the later one writes a table whose rows refer to (foreign key) a table the earlier one touches (a
  child row must not come before its parent's insert);
- the later one updates or deletes in a table that others' rows refer to, and the earlier one touches
  one of those (a key that a child row checked must not change under it).

An insert into a table others refer to may move back over statements on those other tables: the rows it
adds are new, and a row committed in the same batch that referred to one of them before its insert would
have failed anyway. A statement of any other form (or naming no table of the schema) moves over
nothing and nothing moves over it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from core.store import schema
from core.store.base import Statement

_CREATE = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.IGNORECASE)
_ALTER = re.compile(r"ALTER\s+TABLE\s+(\w+)", re.IGNORECASE)
_REFERENCES = re.compile(r"REFERENCES\s+(\w+)", re.IGNORECASE)
_WRITE = re.compile(r"\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(\w+)", re.IGNORECASE)
_WORD = re.compile(r"\w+")


def _schema_tables() -> tuple[frozenset[str], dict[str, frozenset[str]], dict[str, str]]:
    """The schema's tables; for each the tables its rows refer to (foreign keys); and the tables whose
    only unique column is a one-column primary key given by the writer (not serial), with that key."""
    tables: set[str] = set()
    parents: dict[str, set[str]] = {}
    keys: dict[str, str] = {}
    other_unique: set[str] = set()
    for _, texts in schema.MIGRATIONS:
        for text in texts:
            text = text.strip()
            index = _UNIQUE_INDEX.match(text)
            if index is not None:
                other_unique.add(index.group(1).lower())
                continue
            named = _CREATE.match(text) or _ALTER.match(text)
            if named is None:
                continue
            table = named.group(1).lower()
            for parent in _REFERENCES.findall(text):
                parents.setdefault(table, set()).add(parent.lower())
            if _ALTER.match(text):
                if re.search(r"\b(UNIQUE|PRIMARY)\b", text, re.IGNORECASE):
                    other_unique.add(table)
                continue
            tables.add(table)
            body = text[text.index("(") + 1 :]
            key = _KEY_COLUMN.search(body)
            if key is None or "{serial}" in key.group(0) or len(_UNIQUE.findall(body)) != 1:
                other_unique.add(table)  # no one-column key given by the writer, or another unique
            else:
                keys[table] = key.group(1).lower()
    frozen = {t: frozenset(p) for t, p in parents.items()}
    return frozenset(tables), frozen, {t: k for t, k in keys.items() if t not in other_unique}


_UNIQUE_INDEX = re.compile(r"CREATE\s+UNIQUE\s+INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?\w+\s+ON\s+(\w+)", re.I)
_KEY_COLUMN = re.compile(r"^\s*(\w+)\s+(?:\{serial\}|[^,\n]*\bPRIMARY\s+KEY\b)", re.I | re.M)
_UNIQUE = re.compile(r"\b(?:UNIQUE|PRIMARY\s+KEY|\{serial\})", re.I)
TABLES, PARENTS, KEYS = _schema_tables()
CHILDREN: dict[str, frozenset[str]] = {
    parent: frozenset(child for child, ps in PARENTS.items() if parent in ps)
    for parent in {p for ps in PARENTS.values() for p in ps}
}


@dataclass(frozen=True, slots=True)
class Footprint:
    """What one SQL text touches."""

    target: str
    """The table it writes; '' when it is not a plain write to a table of the schema (a fence)."""
    tables: frozenset[str]
    """Every table of the schema it names (its target included)."""
    insert: bool
    key: int | None = None
    """The index of the parameter that is the primary key of the one row it writes, if it writes one
    row by key (see the module's rules)."""


@functools.lru_cache(maxsize=4096)
def footprint(sql: str) -> Footprint:
    """What ``sql`` writes and names (computed once per distinct text)."""
    m = _WRITE.match(sql)
    named = frozenset(w.lower() for w in _WORD.findall(sql) if w.lower() in TABLES)
    if m is None or m.group(2).lower() not in TABLES:
        return Footprint("", named, insert=False)
    target = m.group(2).lower()
    insert = m.group(1).upper().startswith("INSERT")
    key = None
    if named == {target} and target in KEYS and not re.search(r"\bSELECT\b", sql, re.I):
        key = (_inserted_key if insert else _where_key)(sql, KEYS[target])
    return Footprint(target, named, insert=insert, key=key)


_INSERT = re.compile(r"INSERT\s+INTO\s+\w+\s*\(([^)]*)\)\s*VALUES\s*\(([^)]*)\)", re.I)


def _inserted_key(sql: str, column: str) -> int | None:
    """The parameter of an ``INSERT``'s key column, if the key is a ``?`` of its one row of values."""
    text = sql.strip()
    m = _INSERT.match(text)
    if m is None or not re.fullmatch(r"\s*(ON\s+CONFLICT\b[^(]*\([^()]*\)[^()]*)?", text[m.end() :], re.I):
        return None  # (more rows of values, or a conflict clause with more than its target's list)
    columns = [c.strip().lower() for c in m.group(1).split(",")]
    values = [v.strip() for v in m.group(2).split(",")]
    if len(columns) != len(values) or column not in columns or "?" in text[: m.start(2)]:
        return None
    i = columns.index(column)
    if values[i] != "?" or any("?" in v and v != "?" for v in values):
        return None
    return values[:i].count("?")


_WHERE_KEY = re.compile(r"\bWHERE\s+(\w+)\s*=\s*\?", re.I)


def _where_key(sql: str, column: str) -> int | None:
    """The parameter of an ``UPDATE``'s or ``DELETE``'s key, if its ``WHERE`` starts with ``key = ?``,
    has no ``OR`` and the key is not among what it sets."""
    m = _WHERE_KEY.search(sql)
    if m is None or m.group(1).lower() != column or re.search(r"\bOR\b", sql[m.start() :], re.I):
        return None
    if re.search(rf"\b{re.escape(column)}\s*=", sql[: m.start()], re.I):
        return None  # (the key itself is changed)
    return sql[: m.end()].count("?") - 1


@functools.lru_cache(maxsize=16384)
def may_pass(later: str, earlier: str) -> bool | None:
    """Whether a statement of text ``later`` may run before one of text ``earlier`` that preceded it
    without changing what either does (see the module's rules); None: only if they write different rows
    of their one table (both by key)."""
    s, g = footprint(later), footprint(earlier)
    if not s.target or not g.target:
        return False
    if PARENTS.get(s.target, frozenset()) & g.tables:
        return False
    if not s.insert and CHILDREN.get(s.target, frozenset()) & g.tables:
        return False
    if s.tables & g.tables:
        return None if s.key is not None and g.key is not None else False
    return True


class _Run:
    __slots__ = ("keys", "rows", "text")

    def __init__(self, text: str, params: Sequence[Any], key: Any) -> None:
        self.text = text
        self.rows = [params]
        self.keys: set[Any] | None = None if key is None else {key}

    def add(self, params: Sequence[Any], key: Any) -> None:
        """One more row; the run's keys stay known only while every row's key is."""
        self.rows.append(params)
        if self.keys is not None:
            if key is None:
                self.keys = None
            else:
                self.keys.add(key)


def _key(text: str, params: Sequence[Any]) -> Any:
    i = footprint(text).key
    if i is None or i >= len(params):
        return None
    k = params[i]
    return k if isinstance(k, str | int) and not isinstance(k, bool) else None


def runs(statements: Iterable[Statement]) -> list[tuple[str, list[Sequence[Any]]]]:
    """``statements`` as runs of one SQL text, each statement in the latest run of its text that it may
    move back to (else a new run at the end); every run's rows in their order."""
    out: list[_Run] = []
    for text, params in statements:
        key = _key(text, params)
        last = out[-1] if out else None
        if last is not None and last.text == text:
            last.add(params, key)
            continue
        joined = None
        for run in reversed(out):
            if run.text == text:
                joined = run
                break
            ok = may_pass(text, run.text)
            if ok is None:
                ok = key is not None and run.keys is not None and key not in run.keys
            if not ok:
                break
        if joined is None:
            out.append(_Run(text, params, key))
        else:
            joined.add(params, key)
    return [(run.text, run.rows) for run in out]

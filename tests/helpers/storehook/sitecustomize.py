"""Store faults for the fault suite, without a line of the core changed.

Python imports this module at start-up (as ``sitecustomize``) in a process started with this directory
on ``PYTHONPATH`` and ``ASHAO_TEST_STORE_FAULTS`` naming a control file. Connections to a database file
called ``ashao.db`` (the core's store) then misbehave while the control file exists: each write
transaction fails, with the probability the file holds, at one of its statements (before its
``BEGIN``, after some of its writes, or at its ``COMMIT``), as an I/O error of the disk would: an
``sqlite3.OperationalError``, and the statement it names is not run (the store rolls the transaction
back). Each injected failure is logged as a line in ``<control file>.log``.

Read-only remounts and immutable files cannot do this here: a remount read-only is refused while the
store holds its files open for writing, and ``chattr +i`` does not stop writes through descriptors
already open.
"""

from __future__ import annotations

import os
import random
import sqlite3
from typing import Any

CONTROL = os.environ.get("ASHAO_TEST_STORE_FAULTS", "")


def _draw() -> int:
    """How many statements of a new transaction run before it fails (-1: it does not fail)."""
    try:
        with open(CONTROL) as f:
            text = f.read().strip()
    except OSError:
        return -1
    if random.random() >= (float(text) if text else 0.5):
        return -1
    return random.randint(0, 6)


def _record(sql: str) -> None:
    fd = os.open(CONTROL + ".log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (" ".join(sql.split()[:3]) + "\n").encode())
    finally:
        os.close(fd)


class FaultyConnection(sqlite3.Connection):
    """A connection whose write transactions fail as the control file says."""

    fail_in = -1

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        head = sql.lstrip()[:8].upper()
        if head.startswith("BEGIN"):
            self.fail_in = _draw()
        if self.fail_in >= 0:
            if self.fail_in == 0 or head.startswith("COMMIT"):
                self.fail_in = -1
                _record(sql)
                raise sqlite3.OperationalError("disk I/O error (injected)")
            self.fail_in -= 1
        return super().execute(sql, parameters)


if CONTROL:
    _connect = sqlite3.connect

    def _faulty_connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if os.path.basename(os.fspath(database)) == "ashao.db" and "factory" not in kwargs and len(args) < 5:
            kwargs["factory"] = FaultyConnection
        return _connect(database, *args, **kwargs)

    sqlite3.connect = _faulty_connect

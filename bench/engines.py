"""PostgreSQL, NATS and Redis for the benchmarks of a cluster, and what each costs per unit of work.

Each cluster gets a fresh database (``ASHAO_BENCH_POSTGRES_DSN``, default the local server; dropped
afterwards) and a NATS server of its own on a free loopback port (JetStream on, in a throw-away
directory, with its monitoring port open), so that the messages it carries and the CPU it spends are
this benchmark's alone. ``ASHAO_BENCH_NATS_URL`` points at an existing NATS server instead (a fresh
cluster name keeps its stream apart; message counts and NATS CPU are then not reported). Redis
(``ASHAO_BENCH_REDIS_URL``, default the local one) holds the shared rate limits when it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import nats
import orjson
from nats.js.errors import NotFoundError

from ashao_cli.devnet import wait_for_port
from tests.helpers.net import free_port
from tests.helpers.postgres import DEFAULT_DSN, fresh_database


@dataclass(slots=True)
class Engines:
    """The shared services of one benchmark cluster."""

    env: dict[str, str]
    """``ASHAO_STORE``, ``ASHAO_BUS``, ``ASHAO_CLUSTER_NAME`` (and ``ASHAO_LIMITS``) for its cores."""
    dsn: str
    database: str
    nats_pid: int | None = None
    monitor: str = ""
    """``host:port`` of the NATS server's monitoring endpoint (empty: not ours)."""
    counts: dict[str, float] = field(default_factory=dict)

    def postgres_pids(self) -> list[int]:
        """The server processes of this cluster's database (one per connection)."""
        pids = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                with contextlib.suppress(OSError):
                    cmd = (proc / "cmdline").read_bytes()
                    if cmd.startswith(b"postgres: ") and f" {self.database} ".encode() in cmd:
                        pids.append(int(proc.name))
        return pids

    def nats_pids(self) -> list[int]:
        """The NATS server's process, if it is ours."""
        return [self.nats_pid] if self.nats_pid is not None else []

    async def read(self) -> dict[str, float]:
        """Totals so far: transactions and rows written in the database, messages through NATS."""
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            row = await conn.fetchrow(
                "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted AS rows"
                " FROM pg_stat_database WHERE datname = $1",
                self.database,
            )
        finally:
            await conn.close()
        out = {"pg_commits": float(row["xact_commit"]), "pg_rows": float(row["rows"])}
        if self.monitor:
            varz = await asyncio.to_thread(_get_json, f"http://{self.monitor}/varz")
            out["nats_msgs_in"] = float(varz["in_msgs"])
            out["nats_msgs_out"] = float(varz["out_msgs"])
        return out


def _get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as r:  # (our own server, on loopback)
        data = orjson.loads(r.read())
        assert isinstance(data, dict)
        return data


def _redis_answers(url: str) -> bool:
    host, _, rest = url.removeprefix("redis://").partition(":")
    port = int(rest.split("/", 1)[0] or 6379)
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _start_nats(store_dir: str) -> tuple[subprocess.Popen[bytes], str, str]:
    """A NATS server (JetStream in ``store_dir``) on free loopback ports: (process, URL, monitor)."""
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    port, mport = free_port(), free_port()
    proc = subprocess.Popen(
        [binary, "-js", "-sd", store_dir, "-a", "127.0.0.1", "-p", str(port), "-m", str(mport)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if not wait_for_port(f"127.0.0.1:{port}", timeout=15, proc=proc):
        proc.kill()
        raise RuntimeError("nats-server did not start")
    return proc, f"nats://127.0.0.1:{port}", f"127.0.0.1:{mport}"


@contextlib.asynccontextmanager
async def engines() -> AsyncIterator[Engines]:
    """A fresh database and a NATS server (or cluster name) for one cluster; gone on exit."""
    admin = os.environ.get("ASHAO_BENCH_POSTGRES_DSN") or DEFAULT_DSN
    name = f"b{secrets.token_hex(5)}"
    with tempfile.TemporaryDirectory(prefix="ashao-bench-nats-") as store_dir:
        nats_url = os.environ.get("ASHAO_BENCH_NATS_URL", "")
        proc: subprocess.Popen[bytes] | None = None
        monitor = ""
        if not nats_url:
            proc, nats_url, monitor = await asyncio.to_thread(_start_nats, store_dir)
        try:
            async with fresh_database(admin) as dsn:
                env = {"ASHAO_STORE": dsn, "ASHAO_BUS": nats_url, "ASHAO_CLUSTER_NAME": name}
                limits = os.environ.get("ASHAO_BENCH_REDIS_URL") or "redis://127.0.0.1:6379/0"
                if await asyncio.to_thread(_redis_answers, limits):
                    env["ASHAO_LIMITS"] = limits
                database = dsn.rsplit("/", 1)[1]
                yield Engines(env, dsn, database, proc.pid if proc else None, monitor)
        finally:
            if proc is not None:
                proc.terminate()
                await asyncio.to_thread(proc.wait, 10)
            else:
                nc = await nats.connect(nats_url, connect_timeout=2, allow_reconnect=False)
                with contextlib.suppress(NotFoundError):
                    await nc.jetstream().delete_stream(f"{name.upper()}_JOBS")
                await nc.close()

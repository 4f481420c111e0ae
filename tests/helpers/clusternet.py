"""A cluster of real processes on loopback for the fault cases: cores sharing a PostgreSQL database and a
NATS cluster name, facades and synthetic workers failing over along the list of cores (each preferring
another one, as ``ashao up --cores N --facades M`` starts them); and a NATS server of a test's own, which
it may kill and start again (the shared one is never touched)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

import grpc

from ashao.v1 import operator_pb2, operator_pb2_grpc
from ashao_cli.devnet import LocalNetwork, preferring, wait_for_port
from ashao_cli.operator import operator_metadata
from tests.helpers.faultcase import FAULT_ENV
from tests.helpers.net import free_port

NATS_SERVER_ENV = "ASHAO_TEST_NATS_SERVER"


def nats_server_binary() -> str:
    """The ``nats-server`` program: ``ASHAO_TEST_NATS_SERVER``, else the one on the PATH (or in an sbin
    directory, where packages install it)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin"])
    return os.environ.get(NATS_SERVER_ENV) or shutil.which("nats-server", path=path) or "nats-server"


def synthetic(*, slots: int, tokens: int = 40, rate: float = 20.0) -> tuple[str, ...]:
    """Worker flags: the synthetic backend answering ``tokens`` numbered, time-stamped tokens at ``rate``
    per second (a spliced or repeated answer differs from the stored one), ``slots`` at once."""
    return (
        "--backend",
        "synthetic",
        "--slots",
        str(slots),
        "--tokens-per-sec",
        str(rate),
        "--synthetic-tokens",
        str(tokens),
        "--synthetic-stamp",
    )


class ClusterNet:
    """Cores ``core-1..``, facades ``facade-1..`` and workers ``w1..`` of one cluster."""

    def __init__(
        self,
        root: Path,
        *,
        dsn: str,
        bus: str,
        cluster: str,
        cores: int = 2,
        facades: int = 1,
        workers: int = 2,
        worker_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.dsn = dsn
        self.core_addrs = [f"127.0.0.1:{free_port()}" for _ in range(cores)]
        self.facade_addrs = [f"127.0.0.1:{free_port()}" for _ in range(facades)]
        self.workers = workers
        self.worker_args = tuple(worker_args) or synthetic(slots=32)
        self.root = root
        self.net = LocalNetwork(
            data_dir=root / "core-1",
            http_addr=self.facade_addrs[0],
            grpc_addr=self.core_addrs[0],
            extra_env={
                **FAULT_ENV,
                "ASHAO_STORE": dsn,
                "ASHAO_BUS": bus,
                "ASHAO_CLUSTER_NAME": cluster,
                **(env or {}),
            },
        )

    @property
    def urls(self) -> list[str]:
        """The facades' base URLs."""
        return [f"http://{a}" for a in self.facade_addrs]

    def core_data(self, i: int) -> Path:
        """The data directory of ``core-{i + 1}``."""
        return self.root / f"core-{i + 1}"

    async def start(self) -> None:
        """Start the cores, then the workers, then the facades (each waited for until it listens)."""
        await asyncio.to_thread(self._start)

    def _start(self) -> None:
        for i, addr in enumerate(self.core_addrs):
            self.start_core(i)
            if i == 0:  # the first core proposes the cluster's keys; the others adopt them
                wait_for_port(addr, timeout=30)
        for i in range(self.workers):
            self.net.start_worker(f"w{i + 1}", *self.worker_args, cores=self.worker_cores(i))
        for i in range(len(self.facade_addrs)):
            self.start_facade(i)

    def worker_cores(self, i: int) -> str:
        """The core list worker ``w{i + 1}`` fails over along (worker ``i`` prefers core ``i mod n``)."""
        return preferring(self.core_addrs, i)

    def start_core(self, i: int) -> subprocess.Popen[bytes]:
        return self.net.start_core(
            name=f"core-{i + 1}", grpc_addr=self.core_addrs[i], data_dir=self.core_data(i)
        )

    def start_facade(self, i: int) -> subprocess.Popen[bytes]:
        return self.net.start_facade(
            name=f"facade-{i + 1}", http_addr=self.facade_addrs[i], cores=preferring(self.core_addrs, i)
        )

    def pid(self, name: str) -> int:
        """The pid of the running child ``name``."""
        for n, proc in self.net.children:
            if n == name and proc.poll() is None:
                return proc.pid
        raise LookupError(name)

    def kill(self, name: str) -> None:
        """SIGKILL the child ``name`` (by its pid) and forget it."""
        for n, proc in list(self.net.children):
            if n == name and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
                self.net.children.remove((n, proc))
                return
        raise LookupError(name)

    def stop(self) -> None:
        self.net.stop(timeout=15)

    async def workers_on(self, core: int) -> set[str]:
        """Ids of the workers holding a Connect stream to ``core`` (the operator's view of that core)."""
        async with grpc.aio.insecure_channel(self.core_addrs[core]) as channel:
            r = await operator_pb2_grpc.OperatorServiceStub(channel).ListWorkers(
                operator_pb2.ListWorkersRequest(), metadata=operator_metadata(self.core_data(0)), timeout=5
            )
        return {w.worker_id for w in r.workers if w.connected}


class OwnNats:
    """A ``nats-server`` with JetStream on disk in ``store_dir``, on a free loopback port."""

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = store_dir
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it (on the same port and store as before) and wait until it listens."""
        self.proc = subprocess.Popen(
            [
                nats_server_binary(),
                "-js",
                "-sd",
                str(self.store_dir),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_for_port(f"127.0.0.1:{self.port}", timeout=15, proc=self.proc):
            raise RuntimeError("nats-server did not start")

    def kill(self) -> None:
        """SIGKILL it (what it acknowledged is on disk)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

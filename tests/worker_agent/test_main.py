"""The command line, and the agent as a real process: signals drain it, a second one aborts it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.core import Core, collect
from tests.helpers.wait import eventually
from worker_agent.main import parse

pytestmark = pytest.mark.timeout(60)


def test_defaults_come_from_the_environment() -> None:
    env = {"ASHAO_GRPC_ADDR": "core:1234", "ASHAO_DATA_DIR": "/srv/ashao", "ASHAO_WORKER_API_KEY": "sk-1"}
    s = parse(["--backend", "openai", "--upstream", "http://gpu:8000/v1", "--model", "llama"], env)
    assert (s.core, s.data_dir, s.api_key, s.slots) == ("core:1234", Path("/srv/ashao"), "sk-1", 1)
    assert "sk-1" not in repr(s)
    assert s.tiers == ()  # every tier the backend serves, as the core says when the agent starts
    s = parse(["--backend", "synthetic", "--name", "w"], {})
    assert (s.core, s.data_dir, s.api_key, s.synthetic_tokens) == ("127.0.0.1:50051", Path(".ashao"), "", 16)
    assert s.drain_timeout_s == 300.0


def test_flags() -> None:
    s = parse(
        "--core h:1 --name n --data-dir d --backend synthetic --slots 8 --tiers free,pro --tokens-per-sec 50"
        " --synthetic-tokens 100 --synthetic-stamp --drain-timeout 5"
        " --image-backend a1111 --image-upstream http://sd:7860".split(),
        {},
    )
    assert (s.core, s.name, s.data_dir, s.backend, s.slots) == ("h:1", "n", Path("d"), "synthetic", 8)
    assert (s.tokens_per_sec, s.synthetic_tokens, s.synthetic_stamp, s.drain_timeout_s) == (50, 100, True, 5)
    assert s.tiers == ("free", "pro")
    s = parse("--image-backend openai --image-upstream http://sd --image-model sdxl".split(), {})
    assert s.backend is None and (s.image_backend, s.image_model) == ("openai", "sdxl")


@pytest.mark.parametrize(
    "argv",
    [
        [],  # no default backend for a real deployment
        ["--backend", "openai"],
        ["--backend", "openai", "--upstream", "http://x"],
        ["--backend", "synthetic", "--slots", "0"],
        ["--backend", "llama"],
        ["--image-backend", "a1111"],
        ["--image-backend", "openai", "--image-upstream", "http://sd"],
        ["--backend", "synthetic", "--name", " "],
        ["--backend", "synthetic", "--tls-ca", "/no/such/file.pem"],
        ["--backend", "synthetic", "--drain-timeout", "-1"],
        ["--backend", "synthetic", "--tokens-per-sec", "fast"],
        # Tiers a worker's backends cannot serve are checked against the core's tiers when the agent
        # starts (tests/worker_agent/test_agent.py), not here: the agent copies none of the core's tiers.
    ],
)
def test_bad_command_lines_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse(argv, {})
    assert info.value.code == 2 and "error" in capsys.readouterr().err


def test_every_setting_is_a_flag_and_an_environment_variable() -> None:
    env = {
        "ASHAO_WORKER_BACKEND": "synthetic",
        "ASHAO_WORKER_SLOTS": "3",
        "ASHAO_WORKER_TIERS": "free,basic",
        "ASHAO_WORKER_SYNTHETIC_STAMP": "true",
        "ASHAO_WORKER_BACKOFF_MAX_S": "2.5",
    }
    s = parse([], env)
    assert (s.backend, s.slots, s.tiers, s.synthetic_stamp, s.backoff_max_s) == (
        "synthetic",
        3,
        ("free", "basic"),
        True,
        2.5,
    )
    # flags win over the environment
    s = parse(["--slots", "5", "--no-synthetic-stamp", "--tiers", "pro", "--backoff-max-s", "1"], env)
    assert (s.slots, s.synthetic_stamp, s.tiers, s.backoff_max_s) == (5, False, ("pro",), 1.0)


def test_errors_name_the_flag_and_the_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse(["--backend", "synthetic"], {"ASHAO_WORKER_SLOTS": "0"})
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("usage: ashao worker")
    assert "error: --slots / ASHAO_WORKER_SLOTS: " in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        parse(["--backend", "openai", "--upstream", "http://gpu"], {})
    assert "--backend openai needs --upstream and --model" in capsys.readouterr().err


def test_help_shows_every_flag_with_its_default_and_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse(["--help"], {})
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert info.value.code == 0
    for flag, default, env in [
        ("--core CORE", "127.0.0.1:50051", "ASHAO_GRPC_ADDR"),
        ("--data-dir PATH", ".ashao", "ASHAO_DATA_DIR"),
        ("--slots N", "1", "ASHAO_WORKER_SLOTS"),
        ("--drain-timeout SECONDS", "300.0", "ASHAO_WORKER_DRAIN_TIMEOUT_S"),
        ("--tls, --no-tls", "off", "ASHAO_WORKER_TLS"),
        ("--tls-ca PATH", "none", "ASHAO_WORKER_TLS_CA_FILE"),
        ("--name NAME", "the host name", "ASHAO_WORKER_NAME"),
    ]:
        assert flag in out, flag
        assert f"[default: {default}; env {env}]" in out, (flag, default, env)
    for flag in (
        "--backend {openai,synthetic}",
        "--upstream",
        "--model",
        "--tiers",
        "--tokens-per-sec",
        "--synthetic-tokens",
        "--synthetic-stamp",
        "--image-backend {openai,a1111,synthetic}",
        "--image-upstream",
        "--image-model",
    ):
        assert flag in out, flag
    # keys are never flags (a command line shows in the process list), but --help names them
    assert "--api-key" not in out and "--image-api-key" not in out
    assert "ASHAO_WORKER_API_KEY" in out and "ASHAO_WORKER_IMAGE_API_KEY" in out


@contextlib.asynccontextmanager
async def agent_process(core: Core, tmp_path: Path, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m worker_agent`` with a synthetic backend, welcomed by the core; killed if left running."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker_agent",
        "--core",
        core.app.address,
        "--name",
        "proc",
        "--data-dir",
        str(tmp_path / "agent"),
        "--backend",
        "synthetic",
        *args,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await eventually(lambda: core.app.jobs.serving("free"), timeout=20)
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_sigterm_drains_running_jobs_and_exits_0(core: Core, tmp_path: Path) -> None:
    async with agent_process(core, tmp_path, "--tokens-per-sec", "40", "--synthetic-tokens", "30") as proc:
        job_id, _ = await core.send("finish me")
        await eventually(lambda: len(core.app.jobs.board.get(job_id).log.tokens) >= 2)
        proc.send_signal(signal.SIGTERM)
        events = await collect(core, job_id)
        assert events[-1][1:] == ("done", 30)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert proc.stderr is not None
        err = (await proc.stderr.read()).decode()
        for line in ("registered as wrk_", "connected to the core", "draining", "drained"):
            assert line in err, err


async def logged(proc: asyncio.subprocess.Process, text: str) -> None:
    """Read the process's log until a line with ``text``."""
    assert proc.stderr is not None
    async with asyncio.timeout(10):
        while text not in (line := (await proc.stderr.readline()).decode()):
            assert line, f"the log ended without {text!r}"


async def test_second_signal_aborts_at_once(core: Core, tmp_path: Path) -> None:
    async with agent_process(core, tmp_path, "--tokens-per-sec", "5", "--synthetic-tokens", "1000") as proc:
        job_id, _ = await core.send("never finishes")
        await eventually(lambda: len(core.app.jobs.board.get(job_id).log.tokens) >= 1)
        proc.send_signal(signal.SIGTERM)
        await logged(proc, "draining")  # the first signal started a drain
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 5) == 1
        # the core takes the job back for another worker
        await eventually(lambda: core.app.jobs.board.get(job_id).worker_id == "")


async def test_sigterm_when_idle_exits_without_waiting_for_a_timeout(core: Core, tmp_path: Path) -> None:
    # Its drain timeout and its grace for the core to close the stream are an hour: with nothing
    # running it ends as soon as the core has closed the stream.
    args = ("--drain-timeout", "3600", "--shutdown-grace-s", "3600")
    async with agent_process(core, tmp_path, *args) as proc:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0

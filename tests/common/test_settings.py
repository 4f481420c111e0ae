"""One settings mechanism for every program: flags derived from the pydantic-settings classes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ashao_cli.config import UpSettings
from ashao_common.settings import ENV_ONLY, Flag, load_settings, settings_parser
from core.config import CoreSettings
from facade.config import FacadeSettings
from facade.main import parse as parse_facade
from worker_agent.config import AgentSettings

PROGRAMS: list[tuple[str, type[BaseSettings], list[str]]] = [
    ("ashao core", CoreSettings, ["--grpc-addr", "--data-dir"]),
    ("ashao facade", FacadeSettings, ["--http-addr", "--core"]),
    (
        "ashao worker",
        AgentSettings,
        "--core --name --data-dir --backend --upstream --model --slots --tiers --tokens-per-sec"
        " --synthetic-tokens --synthetic-stamp --image-backend --image-upstream --image-model"
        " --drain-timeout --tls --tls-ca".split(),
    ),
    (
        "ashao up",
        UpSettings,
        "--http-addr --grpc-addr --data-dir --local-workers --worker-slots --tokens-per-sec".split(),
    ),
]


class Toy(BaseSettings):
    """A settings class for the bridge alone."""

    model_config = SettingsConfigDict(env_prefix="TOY_", use_attribute_docstrings=True)

    count: int = Field(2, ge=0)
    """How many (100% of them)."""
    mode: Literal["a", "b"] | None = None
    """Which mode."""
    loud: bool = False
    """Shout."""
    where: Annotated[Path, Flag("--at")] = Path("here")
    """Where it happens."""
    secret: Annotated[str, ENV_ONLY] = Field("", repr=False)
    """A key."""

    @model_validator(mode="after")
    def _mode_needs_count(self) -> Toy:
        if self.mode == "b" and self.count == 0:
            raise ValueError("--mode b needs --count")
        return self


def load(argv: list[str], env: dict[str, str]) -> Toy:
    return load_settings(Toy, argv, prog="toy", description="A toy.", environ=env)


def test_flags_over_the_environment_over_defaults() -> None:
    s = load([], {})
    assert (s.count, s.mode, s.loud, s.where, s.secret) == (2, None, False, Path("here"), "")
    env = {"TOY_COUNT": "5", "TOY_MODE": "a", "TOY_LOUD": "true", "TOY_WHERE": "there", "TOY_SECRET": "s"}
    s = load([], env)
    assert (s.count, s.mode, s.loud, s.where, s.secret) == (5, "a", True, Path("there"), "s")
    s = load(["--count", "7", "--mode", "b", "--no-loud", "--at", "x"], env)
    assert (s.count, s.mode, s.loud, s.where, s.secret) == (7, "b", False, Path("x"), "s")


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["--count", "-1"], {}, "error: --count / TOY_COUNT: Input should be greater than or equal to 0"),
        ([], {"TOY_COUNT": "many"}, "error: --count / TOY_COUNT: Input should be a valid integer"),
        (["--mode", "c"], {}, "argument --mode: invalid choice: 'c'"),
        (["--mode", "b", "--count", "0"], {}, "error: --mode b needs --count"),
        (["--secret", "s"], {}, "unrecognized arguments: --secret s"),
    ],
)
def test_errors_are_usage_errors_naming_the_setting(
    argv: list[str], env: dict[str, str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        load(argv, env)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("usage: toy [options]") and "Traceback" not in err
    assert expected in err, err


def test_help_has_each_flags_text_default_and_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load(["--help"], {})
    out = " ".join(capsys.readouterr().out.split())
    assert "--count N How many (100% of them). [default: 2; env TOY_COUNT]" in out
    assert "--mode {a,b} Which mode. [default: none; env TOY_MODE]" in out
    assert "--loud, --no-loud Shout. [default: off; env TOY_LOUD]" in out
    assert "--at PATH Where it happens. [default: here; env TOY_WHERE]" in out
    assert "--secret" not in out and "from the environment only: TOY_SECRET: A key." in out


@pytest.mark.parametrize(("prog", "cls", "flags"), PROGRAMS, ids=[p for p, _, _ in PROGRAMS])
def test_every_program_documents_every_setting(prog: str, cls: type[BaseSettings], flags: list[str]) -> None:
    for name, info in cls.model_fields.items():
        assert info.description, f"{cls.__name__}.{name} has no docstring"
    help_text = " ".join(settings_parser(cls, prog=prog, description="").format_help().split())
    for flag in flags:  # the flags every program had keep their names
        assert f" {flag} " in help_text or f" {flag}," in help_text, (prog, flag)
    assert help_text.count("[default: ") == len(
        [n for n, i in cls.model_fields.items() if ENV_ONLY not in i.metadata]
    )


def test_facade_flags_and_a_bad_listen_address(capsys: pytest.CaptureFixture[str]) -> None:
    s = parse_facade(["--core", "core:1", "--http-addr", "[::1]:8081"], {"ASHAO_CALL_TIMEOUT_S": "3"})
    assert (s.grpc_addr, s.http_addr, s.call_timeout_s) == ("core:1", "[::1]:8081", 3.0)
    assert parse_facade([], {"ASHAO_GRPC_ADDR": "core:2"}).grpc_addr == "core:2"
    with pytest.raises(SystemExit) as info:
        parse_facade([], {"ASHAO_HTTP_ADDR": "8080"})
    assert info.value.code == 2
    assert "error: --http-addr / ASHAO_HTTP_ADDR: not host:port: '8080'" in capsys.readouterr().err


def test_up_reads_the_variables_the_core_and_facade_share(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"ASHAO_HTTP_ADDR": "127.0.0.1:1", "ASHAO_GRPC_ADDR": "127.0.0.1:2", "ASHAO_DATA_DIR": "d"}
    s = load_settings(UpSettings, ["--local-workers", "0"], prog="ashao up", description="", environ=env)
    assert (s.http_addr, s.grpc_addr, s.data_dir, s.local_workers) == (
        "127.0.0.1:1",
        "127.0.0.1:2",
        Path("d"),
        0,
    )
    with pytest.raises(SystemExit):
        load_settings(UpSettings, ["--worker-slots", "0"], prog="ashao up", description="", environ={})
    assert "error: --worker-slots / ASHAO_WORKER_SLOTS: " in capsys.readouterr().err

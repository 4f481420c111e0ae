"""Every flag of every ``ashao`` command has help text, its default (or says it is required) and the
environment variable that sets it, and the command's ``--help`` shows it."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess

import pytest
from pydantic_settings import BaseSettings

from ashao_cli.config import (
    GrantSettings,
    JoinTokenSettings,
    ListWorkersSettings,
    RevokeSettings,
    StatusSettings,
    UpSettings,
)
from ashao_cli.main import main
from ashao_common.settings import settings_parser
from core.config import CoreSettings
from facade.config import FacadeSettings
from tests.helpers.tools import ROOT
from worker_agent.config import AgentSettings

COMMANDS: list[tuple[list[str], type[BaseSettings]]] = [
    (["up"], UpSettings),
    (["core"], CoreSettings),
    (["facade"], FacadeSettings),
    (["worker"], AgentSettings),
    (["status"], StatusSettings),
    (["credits", "grant"], GrantSettings),
    (["workers", "join-token"], JoinTokenSettings),
    (["workers", "list"], ListWorkersSettings),
    (["workers", "revoke"], RevokeSettings),
]
HELP = re.compile(r"^\S.* \[(default: .+|required); env ASHAO_[A-Z0-9_]+\]$")


@pytest.mark.parametrize(("argv", "cls"), COMMANDS, ids=[" ".join(a) for a, _ in COMMANDS])
def test_every_flag_has_text_default_and_variable(
    argv: list[str], cls: type[BaseSettings], capsys: pytest.CaptureFixture[str]
) -> None:
    parser = settings_parser(cls, prog="ashao " + " ".join(argv), description="")
    options = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    assert options
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    shown = "".join(capsys.readouterr().out.split())  # argparse wraps lines, also after hyphens
    for action in options:
        text = " ".join((action.help or "").replace("%%", "%").split())
        assert HELP.match(text), (action.option_strings or action.dest, text)
        assert "".join(text.split()) in shown, text
        for flag in action.option_strings:
            assert flag in shown, flag


@pytest.mark.parametrize("command", ["credits", "workers"])
def test_operator_commands_list_their_actions(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: ashao {command} ACTION [options]") and "--help shows the options" in out
    assert main([command, "nonsense"]) == 2
    assert "unknown action 'nonsense'" in capsys.readouterr().err


def test_make_up_passes_its_args_to_ashao_up() -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    ran = subprocess.run(
        [
            make,
            "--no-print-directory",
            "-n",
            "-o",
            ".venv/.installed",
            "up",
            "ARGS=--local-workers 0 --tokens-per-sec 5",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")},
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().splitlines()[-1] == ".venv/bin/ashao up --local-workers 0 --tokens-per-sec 5"

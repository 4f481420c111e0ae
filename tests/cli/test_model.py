"""`ashao up --model`: the model's weights are found in the package that ships them, the server is run
as one generation at a time, and a missing extra is a clear error before anything starts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ashao_cli.devnet import wait_for_port
from ashao_cli.model import MODELS, ModelUnavailableError, server_args, weights
from tests.helpers.net import free_port
from tests.helpers.tools import ROOT

SMOLLM2 = MODELS["smollm2"]


def test_a_missing_extra_stops_up_before_anything_starts(tmp_path: Path) -> None:
    http_addr, grpc_addr = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = dict(
        os.environ, ASHAO_HTTP_ADDR=http_addr, ASHAO_GRPC_ADDR=grpc_addr, ASHAO_DATA_DIR=str(tmp_path / "d")
    )
    hide = "import sys; sys.modules['llama_cpp'] = None; from ashao_cli.main import main; sys.exit(main())"
    r = subprocess.run(
        [sys.executable, "-c", hide, "up", "--model", "smollm2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert r.returncode == 2, r.stderr
    assert re.search(
        r"--model smollm2 needs the optional 'model' extra \([^)]*llama_cpp[^)]* not installed\)", r.stderr
    )
    assert "make up-model" in r.stderr and "'.[model]'" in r.stderr
    assert not (tmp_path / "d").exists() and not wait_for_port(grpc_addr, timeout=0.2)


def test_an_unknown_model_is_a_usage_error() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ashao_cli", "up", "--model", "gpt-9"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert r.returncode == 2 and "--model" in r.stderr and "smollm2" in r.stderr, r.stderr


def test_weights_are_the_gguf_the_package_ships(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    package = tmp_path / "fake_model_pkg"
    (package / "weights").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "weights" / "m.gguf").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("ashao_cli.model.SERVER_MODULES", ("fake_model_pkg",))
    model = MODELS["smollm2"].__class__(
        name="fake", package="fake_model_pkg", served_as="Fake", context=512, licence="none"
    )
    assert weights(model) == package / "weights" / "m.gguf"
    (package / "weights" / "m.gguf").unlink()
    with pytest.raises(ModelUnavailableError, match=r"no \.gguf file in the fake_model_pkg package"):
        weights(model)


def test_the_server_runs_one_generation_at_a_time_without_cutting_it_off(tmp_path: Path) -> None:
    args = server_args(SMOLLM2, tmp_path / "m.gguf", addr="127.0.0.1:8123", threads=2)
    pairs = dict(zip(args[2::2], args[3::2], strict=True))
    assert args[:2] == ["-m", "llama_cpp.server"]
    assert pairs["--interrupt_requests"] == "False"
    assert pairs["--host"] == "127.0.0.1" and pairs["--port"] == "8123"
    assert pairs["--model_alias"] == SMOLLM2.served_as and pairs["--n_threads"] == "2"

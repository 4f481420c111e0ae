"""The core's settings: flags over the environment, and the relay's providers as typed, validated entries."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from core.config import CoreSettings, ProviderSpec
from core.main import parse
from core.relay.providers import HostedProvider, hosted_providers

GOOD = {"name": "a", "base_url": "http://127.0.0.1:9/v1", "model": "m"}


def test_flags_over_the_environment_over_defaults() -> None:
    s = parse([], {})
    assert (s.grpc_addr, s.data_dir, s.relay_providers) == ("127.0.0.1:50051", Path(".ashao"), [])
    env = {"ASHAO_GRPC_ADDR": "0.0.0.0:1", "ASHAO_DATA_DIR": "/srv/a", "ASHAO_MAX_ATTEMPTS": "5"}
    s = parse([], env)
    assert (s.grpc_addr, s.data_dir, s.max_attempts) == ("0.0.0.0:1", Path("/srv/a"), 5)
    s = parse(["--grpc-addr", "127.0.0.1:7", "--data-dir", "d", "--max-attempts", "2"], env)
    assert (s.grpc_addr, s.data_dir, s.max_attempts) == ("127.0.0.1:7", Path("d"), 2)


def test_relay_providers_are_typed_entries_with_defaults() -> None:
    env = {
        "ASHAO_RELAY_PROVIDERS": orjson.dumps([GOOD, {**GOOD, "name": "b", "max_connections": 4}]).decode()
    }
    s = parse([], env)
    assert [p.name for p in s.relay_providers] == ["a", "b"]
    a, b = s.relay_providers
    assert (a.first_chunk_timeout_s, a.total_timeout_s, a.max_connections, a.api_key_env) == (
        10.0,
        120.0,
        100,
        "",
    )
    assert b.max_connections == 4
    # the same JSON as a flag, and the typed list from Python
    assert parse(["--relay-providers", env["ASHAO_RELAY_PROVIDERS"]], {}).relay_providers == s.relay_providers
    assert CoreSettings(relay_providers=[ProviderSpec(**GOOD)]).relay_providers[0].name == "a"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("providers", "expected"),
    [
        ([GOOD, {"name": "b", "model": "m"}], "entry 1, base_url: Field required"),
        ([{**GOOD, "base_url": "not a url"}], "entry 0, base_url: "),
        ([{**GOOD, "first_chunk_timeout_s": 0}], "entry 0, first_chunk_timeout_s: "),
        ([{**GOOD, "max_connections": 0}], "entry 0, max_connections: "),
        (
            [{**GOOD, "first_chunk_timeout": 3}],
            "entry 0, first_chunk_timeout: Extra inputs are not permitted",
        ),
        ([GOOD, GOOD], "entry 1: the name 'a' is taken"),
        ([{**GOOD, "name": "network"}], "entry 0: the name 'network' is taken"),
        ([{**GOOD, "name": ""}], "entry 0, name: "),
        ("[{", "not JSON"),
        ({"name": "a"}, "Input should be a valid list"),
    ],
)
def test_a_bad_provider_entry_is_a_start_up_error_naming_it(
    providers: object, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = providers if isinstance(providers, str) else orjson.dumps(providers).decode()
    with pytest.raises(SystemExit) as info:
        parse([], {"ASHAO_RELAY_PROVIDERS": text})
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    assert f"error: --relay-providers / ASHAO_RELAY_PROVIDERS: {expected}" in err, err


async def test_hosted_providers_are_built_from_the_typed_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PROVIDER_KEY", "sk-test")
    specs = [ProviderSpec(**{**GOOD, "api_key_env": "TEST_PROVIDER_KEY", "max_connections": 3})]  # type: ignore[arg-type]
    specs.append(ProviderSpec(**{**GOOD, "name": "b", "base_url": "http://h:1"}))  # type: ignore[arg-type]
    providers = hosted_providers(specs)
    try:
        assert [p.name for p in providers] == ["a", "b"]
        a, b = providers
        assert isinstance(a, HostedProvider) and isinstance(b, HostedProvider)
        assert a._headers == {"Authorization": "Bearer sk-test"} and b._headers == {}
        assert (
            a._url == "http://127.0.0.1:9/v1/chat/completions" and b._url == "http://h:1/v1/chat/completions"
        )
    finally:
        for p in providers:
            assert isinstance(p, HostedProvider)
            await p.aclose()

"""Operator commands refuse out-of-range input with a usage error, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from ashao_cli.operator import credits


@pytest.mark.parametrize("amount", ["9223372036854775808", "0", "-5", "ten", "1e3"])
def test_grant_amount_out_of_range_is_a_usage_error(
    amount: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        credits(["grant", "--user", "usr_x", "--amount", amount, "--data-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--amount" in err and "Traceback" not in err


def test_grant_without_an_operator_token_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert credits(["grant", "--user", "usr_x", "--amount", "5", "--data-dir", str(tmp_path)]) == 2
    assert "operator token" in capsys.readouterr().err

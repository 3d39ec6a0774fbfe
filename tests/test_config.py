from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskman.config import UNTIL_RESET, ConfigError, load_config
from tests.conftest import REPO

SHIPPED = REPO / "config" / "riskman.yaml"


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "holidays.yaml").write_text((REPO / "config" / "holidays.yaml").read_text())
    path = tmp_path / "riskman.yaml"
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_shipped_config_is_valid_and_matches_the_spec_keys() -> None:
    settings = load_config(SHIPPED)
    rules = settings.rules
    assert rules.max_contracts.limit == 5 and rules.max_contracts.count == "net"
    assert rules.max_contracts_per_instrument.limits == {"MNQ": 2}
    assert rules.daily_realized_loss.limit == Decimal(500)
    assert rules.trade_frequency_limit.cooldowns.per_session == UNTIL_RESET
    assert [t.loss for t in rules.cooldown_after_loss.tiers] == [Decimal(100), Decimal(200)]
    assert settings.timezone == "America/Chicago"
    assert settings.database == (REPO / "config" / "riskman.db").resolve()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "rules:\n  max_contracts: {limit: 0}\n",
            "rules.max_contracts.limit: Input should be greater than 0",
        ),
        (
            "rules:\n  max_contracts: {limit: 5, colour: red}\n",
            "rules.max_contracts.colour: unknown key",
        ),
        ('daily_reset: "25:00"\n', "daily_reset: '25:00' is not a time of day"),
        ("timezone: Mars/Base\n", "timezone: 'Mars/Base' is not an IANA timezone"),
        (
            "rules:\n  no_stop_loss_grace: {grace_seconds: 10x}\n",
            "rules.no_stop_loss_grace.grace_seconds: '10x' is not a duration",
        ),
        (
            "rules:\n  trade_frequency_limit: {cooldowns: {per_minute: -5}}\n",
            "rules.trade_frequency_limit.cooldowns.per_minute",
        ),
        (
            "rules:\n  daily_realized_loss: {limit: -500}\n",
            "rules.daily_realized_loss.limit: Input should be greater than 0",
        ),
        (
            "rules:\n  max_contracts_per_instrument: {limits: {ES: 1, EP: 2}}\n",
            "ES and EP are the same contract",
        ),
        (
            "rules:\n  session_block_outside: {days: [mon, someday]}\n",
            "rules.session_block_outside.days.1",
        ),
        ("accounts: [1, 1]\n", "accounts lists the same id twice"),
        (
            "accounts: [{id: 5, rules: {max_contracts: {limit: 0}}}]\n",
            "accounts.0.rules.max_contracts.limit",
        ),
        (
            "gateway: {api_key: abc}\n",
            "gateway.api_key: the API key must not be written in the config file",
        ),
        ("rules: [1, 2]\n", "rules:"),
        ("max_contracts: {limit: 3}\n", "max_contracts: unknown key"),
        ("rules:\n  max_contracts: {limit: true}\n", "rules.max_contracts.limit"),
        ("rules: {max_contracts: {limit: 3}\n", "line"),
    ],
)
def test_invalid_values_are_reported_with_file_key_and_reason(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    found = problems(path)
    assert any(p.startswith(f"{path}: ") and expected in p for p in found), found


def test_durations_accept_seconds_units_and_until_reset(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "rules:\n  trade_frequency_limit: {cooldowns: {per_minute: 90s, per_hour: 30m, per_session: until_reset}}\n"
        "  no_stop_loss_grace: {grace_seconds: 1h}\n"
        "admin: {idle_lock: 45}\n",
    )
    settings = load_config(path)
    cooldowns = settings.rules.trade_frequency_limit.cooldowns
    assert (cooldowns.per_minute, cooldowns.per_hour, cooldowns.per_session) == (
        90,
        1800,
        UNTIL_RESET,
    )
    assert settings.rules.no_stop_loss_grace.grace_seconds == 3600
    assert settings.admin.idle_lock == 45


@pytest.mark.parametrize(
    ("value", "seconds"), [("0", 0.0), ("2m", 120.0), ("45", 45.0), (None, 120.0)]
)
def test_gateway_start_wait_is_a_duration_or_0_for_forever(
    tmp_path: Path, value: str | None, seconds: float
) -> None:
    text = "gateway: {}\n" if value is None else f"gateway: {{start_wait: {value}}}\n"
    assert load_config(write(tmp_path, text)).gateway.start_wait == seconds


def test_gateway_start_wait_refuses_a_negative_duration(tmp_path: Path) -> None:
    [problem] = problems(write(tmp_path, "gateway: {start_wait: -5}\n"))
    assert ": gateway.start_wait: " in problem


def test_missing_rules_are_off_and_present_ones_are_on(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, "rules:\n  daily_realized_loss: {limit: 250}\n"))
    assert settings.rules.daily_realized_loss.enabled
    assert not settings.rules.max_contracts.enabled


def test_per_account_rules_override_key_by_key(tmp_path: Path) -> None:
    settings = load_config(
        write(
            tmp_path,
            "accounts: [11, {id: 22, rules: {max_contracts: {limit: 2}}}]\n"
            "rules:\n  max_contracts: {limit: 5, count: gross}\n",
        )
    )
    assert settings.account_ids == [11, 22]
    assert settings.rules_for(11).max_contracts.limit == 5
    overridden = settings.rules_for(22).max_contracts
    assert (overridden.limit, overridden.count) == (2, "gross")


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKMAN_RULES__MAX_CONTRACTS__LIMIT", "2")
    monkeypatch.setenv("RISKMAN_GATEWAY__API_KEY", "k3y-from-env")
    settings = load_config(write(tmp_path, "rules:\n  max_contracts: {limit: 5}\n"))
    assert settings.rules.max_contracts.limit == 2
    assert settings.api_key_value() == "k3y-from-env"
    assert "k3y-from-env" not in str(settings.redacted())


def test_bad_environment_value_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RISKMAN_RULES__MAX_CONTRACTS__LIMIT", "many")
    found = problems(write(tmp_path, ""))
    assert any("(from RISKMAN_RULES__MAX_CONTRACTS__LIMIT)" in p for p in found)


def test_api_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "api_key"
    key.write_text("s3cret-key\n")
    os.chmod(key, 0o644)
    path = write(tmp_path, "gateway: {username: me, api_key_file: api_key}\n")
    assert any("gateway.api_key_file" in p and "chmod 600" in p for p in problems(path))
    os.chmod(key, 0o600)
    assert load_config(path).api_key_value() == "s3cret-key"


def test_symbols_accept_ticker_or_gateway_root(tmp_path: Path) -> None:
    settings = load_config(
        write(
            tmp_path,
            "rules:\n  symbol_blocks: {symbols: [es, NQ, mnq]}\n  max_contracts_per_instrument: {limits: {CL: 1}}\n",
        )
    )
    assert settings.rules.symbol_blocks.symbols == ["EP", "ENQ", "MNQ"]
    assert settings.rules.max_contracts_per_instrument.limits == {"CLE": 1}


def test_check_config_command_accepts_the_shipped_file_and_hides_secrets() -> None:
    env = {**os.environ, "RISKMAN_GATEWAY__API_KEY": "do-not-print-me"}
    result = subprocess.run(
        [sys.executable, "-m", "riskman.cli", "check-config", "--config", str(SHIPPED)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "daily_realized_loss" in result.stdout
    assert "do-not-print-me" not in result.stdout + result.stderr
    assert "hidden" in result.stdout


def test_check_config_command_rejects_a_broken_file(tmp_path: Path) -> None:
    path = write(tmp_path, "rules:\n  max_contracts: {limit: -1}\n")
    result = subprocess.run(
        [sys.executable, "-m", "riskman.cli", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"{path}: rules.max_contracts.limit: Input should be greater than 0" in result.stderr


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
_keys = st.sampled_from(
    [
        ("rules", "max_contracts", "limit"),
        ("rules", "daily_realized_loss", "limit"),
        ("rules", "trade_frequency_limit", "cooldowns", "per_minute"),
        ("daily_reset",),
        ("timezone",),
        ("rules", "session_block_outside", "start"),
        ("rules", "cooldown_after_loss", "tiers"),
        ("rules", "symbol_blocks", "symbols"),
        ("quotes", "stale_after"),
        ("accounts",),
        ("rules", "max_loss_limit", "drawdown"),
        ("rules", "contract_weights", "micro_weight"),
    ]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=_keys, value=_values)
def test_any_value_either_loads_or_is_reported_with_its_key(
    tmp_path: Path, key: tuple[str, ...], value: object
) -> None:
    from ruamel.yaml import YAML

    data: dict[str, object] = {}
    node = data
    for part in key[:-1]:
        node = node.setdefault(part, {})  # type: ignore[assignment]
    node[key[-1]] = value
    path = tmp_path / "fuzz.yaml"
    (tmp_path / "holidays.yaml").write_text((REPO / "config" / "holidays.yaml").read_text())
    with path.open("w") as handle:
        YAML(typ="safe", pure=True).dump(data, handle)
    try:
        load_config(path)
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.startswith(f"{path}: ")
            assert problem.count(": ") >= 2

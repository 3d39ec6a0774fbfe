"""Commitment (issue 13): during a trading day the rules only get stricter.

Each bypass the issue lists is a test here: a looser value from the file, the environment or
a new database waits for the daily reset (the old value still enforced); a stricter one
applies at once; an account dropped from `accounts` stays guarded until the reset.
"""

from __future__ import annotations

import json
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel

from riskman.config import Rules, Settings, load_config, loosens
from riskman.core.clock import FakeClock
from riskman.core.ports import TradeEvent
from riskman.engine.commitment import ANCHOR_NAME, commit, merge_model
from riskman.engine.engine import Engine
from riskman.rules import ALL_RULES
from riskman.rules.daily_realized_loss import DailyRealizedLoss
from tests.conftest import HOLIDAYS, EngineFactory, make_settings
from tests.fakes import FakeGateway, settle, trade

ACC = 7
OTHER = 1002


def _loss(limit: int, **more: Any) -> dict[str, Any]:
    return {"daily_realized_loss": {"enabled": True, "limit": limit, **more}}


def _locked(engine: Engine, account_id: int = ACC) -> bool:
    return any(lock.rule == "RULE-003" for lock in engine.lockouts.get_lockout_info(account_id))


async def _audit(engine: Engine, action: str) -> list[tuple[str, str, str]]:
    rows = await engine.db.fetchall(
        "SELECT target, old_value, new_value FROM admin_audit WHERE action = ?", (action,)
    )
    return [(r["target"], r["old_value"], r["new_value"]) for r in rows]


# --- which value is stricter, per key ---------------------------------------------------------


def _unmarked(model: type[BaseModel], path: str) -> list[str]:
    missing = []
    for name, field in model.model_fields.items():
        nested = [
            a
            for a in (field.annotation, *get_args(field.annotation))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if loosens(field) is not None:
            continue  # the field says it for itself, parts included
        if not nested:
            missing.append(f"{path}.{name}")
        for sub in nested:
            missing += _unmarked(sub, f"{path}.{name}")
    return missing


def test_every_rule_field_says_which_value_is_stricter() -> None:
    # A new rule only annotates its fields (riskman.config.Loosens); this keeps it honest.
    assert _unmarked(Rules, "rules") == []


@pytest.mark.parametrize(
    ("old", "new", "looser"),
    [
        pytest.param(_loss(300), _loss(1000), True, id="higher-limit"),
        pytest.param(_loss(300), _loss(200), False, id="lower-limit"),
        pytest.param(_loss(300), {}, True, id="rule-disabled"),
        pytest.param({}, _loss(300), False, id="rule-enabled"),
        pytest.param(
            _loss(300), _loss(300, include_unrealized=False), True, id="unrealized-dropped"
        ),
        pytest.param(
            {"cooldown_after_loss": {"enabled": True, "tiers": [{"loss": 100, "cooldown": 600}]}},
            {"cooldown_after_loss": {"enabled": True, "tiers": [{"loss": 100, "cooldown": 60}]}},
            True,
            id="shorter-cooldown",
        ),
        pytest.param(
            {"cooldown_after_loss": {"enabled": True, "tiers": [{"loss": 100, "cooldown": 60}]}},
            {
                "cooldown_after_loss": {
                    "enabled": True,
                    "tiers": [{"loss": 100, "cooldown": 60}, {"loss": 200, "cooldown": 600}],
                }
            },
            False,
            id="tier-added",
        ),
        pytest.param(
            {"symbol_blocks": {"enabled": True, "symbols": ["ES", "CL"]}},
            {"symbol_blocks": {"enabled": True, "symbols": ["CL"]}},
            True,
            id="symbol-unblocked",
        ),
        pytest.param(
            {"symbol_blocks": {"enabled": True, "symbols": ["CL"]}},
            {"symbol_blocks": {"enabled": True, "symbols": ["CL", "NQ"]}},
            False,
            id="symbol-blocked",
        ),
        pytest.param(
            {"session_block_outside": {"enabled": True, "end": "15:00"}},
            {"session_block_outside": {"enabled": True, "end": "16:00"}},
            True,
            id="later-session-end",
        ),
        pytest.param(
            {"session_block_outside": {"enabled": True, "end": "15:00"}},
            {"session_block_outside": {"enabled": True, "end": "14:00"}},
            False,
            id="earlier-session-end",
        ),
        pytest.param(
            {"session_block_outside": {"enabled": True, "start": "08:30", "end": "23:00"}},
            {"session_block_outside": {"enabled": True, "start": "08:30", "end": "01:00"}},
            True,
            id="session-end-moved-past-midnight",
        ),
        pytest.param(
            {"trade_frequency_limit": {"enabled": True, "per_hour": 5}},
            {"trade_frequency_limit": {"enabled": True, "per_hour": None}},
            True,
            id="count-limit-removed",
        ),
        pytest.param(
            {"max_contracts": {"enabled": True, "action": "close_all"}},
            {"max_contracts": {"enabled": True, "action": "reduce_to_limit"}},
            True,
            id="milder-action",
        ),
        pytest.param(
            {"contract_weights": {"enabled": False}},
            {"contract_weights": {"enabled": True}},
            True,
            id="micro-weights-on",
        ),
    ],
)
def test_stricter_applies_and_looser_waits(
    old: dict[str, Any], new: dict[str, Any], looser: bool
) -> None:
    before, after = Rules.model_validate(old), Rules.model_validate(new)
    merged, pending = merge_model(before, after, "rules")
    if looser:
        assert pending, "a looser change must wait"
        assert merged == before
    else:
        assert pending == []
        assert merged == after


def test_a_mix_applies_the_stricter_keys_and_holds_the_looser_ones() -> None:
    before = Rules.model_validate({**_loss(300), "max_contracts": {"enabled": True, "limit": 5}})
    after = Rules.model_validate({**_loss(1000), "max_contracts": {"enabled": True, "limit": 2}})
    merged, pending = merge_model(before, after, "rules")
    assert merged.daily_realized_loss.limit == Decimal(300)
    assert merged.max_contracts.limit == 2
    assert pending == [("rules.daily_realized_loss.limit", 300, 1000)]


def test_moving_the_daily_reset_waits(tmp_path: Path) -> None:
    in_force = make_settings(tmp_path, _loss(300))
    moved = make_settings(tmp_path, _loss(300), daily_reset="20:00")
    effective, pending = commit(in_force, moved)
    assert effective.daily_reset == time(17, 0)
    assert [(p.key, p.old, p.new) for p in pending] == [("daily_reset", "17:00", "20:00")]


# --- across a restart: the file, the environment, a new database -------------------------------


async def test_yaml_loosening_across_a_restart_waits_for_the_reset(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    first = await make_engine(_loss(300), rule_classes=[DailyRealizedLoss])
    await first.close()

    engine = await make_engine(_loss(1000), rule_classes=[DailyRealizedLoss])
    assert engine.settings.rules.daily_realized_loss.limit == Decimal(300)
    assert [p.as_json() for p in engine.pending] == [
        {
            "account": None,
            "key": "rules.daily_realized_loss.limit",
            "from": 300,
            "to": 1000,
            "effective": engine.resets.next_reset().isoformat(),
        }
    ]
    assert engine.snapshot().pending == engine.pending
    assert await _audit(engine, "changed outside riskman") == [
        ("rules.daily_realized_loss.limit", "300", "1000")
    ]
    await engine.process(TradeEvent(trade(ACC, pnl="-400")))
    await settle(engine)
    assert _locked(engine), "the old limit ($300) is still enforced"

    await clock.set(engine.resets.next_reset())
    await settle(engine)
    assert engine.settings.rules.daily_realized_loss.limit == Decimal(1000)
    assert engine.pending == ()
    assert not _locked(engine)
    await engine.process(TradeEvent(trade(ACC, pnl="-400")))
    await settle(engine)
    assert not _locked(engine), "after the reset the new limit applies"


async def test_tightening_applies_at_once_across_a_restart(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    first = await make_engine(_loss(500), rule_classes=[DailyRealizedLoss])
    await first.close()
    engine = await make_engine(_loss(200), rule_classes=[DailyRealizedLoss])
    assert engine.settings.rules.daily_realized_loss.limit == Decimal(200)
    assert engine.pending == ()
    await engine.process(TradeEvent(trade(ACC, pnl="-250")))
    await settle(engine)
    assert _locked(engine)


async def test_admin_loosening_waits_and_tightening_applies(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = await make_engine(_loss(300), rule_classes=[DailyRealizedLoss])
    pending = await engine.apply_settings(make_settings(tmp_path, _loss(900)))
    assert [(p.key, p.new) for p in pending] == [("rules.daily_realized_loss.limit", 900)]
    assert engine.settings.rules.daily_realized_loss.limit == Decimal(300)
    await engine.apply_settings(make_settings(tmp_path, _loss(250)))
    assert engine.settings.rules.daily_realized_loss.limit == Decimal(250)
    assert engine.pending == ()


async def test_an_admin_can_cancel_a_pending_loosening(
    make_engine: EngineFactory, clock: FakeClock, tmp_path: Path
) -> None:
    engine = await make_engine(_loss(300), rule_classes=[DailyRealizedLoss])
    await engine.apply_settings(make_settings(tmp_path, _loss(900)))
    await engine.cancel_pending(None, "rules.daily_realized_loss.limit")
    assert engine.pending == ()
    await clock.set(engine.resets.next_reset())
    await settle(engine)
    assert engine.settings.rules.daily_realized_loss.limit == Decimal(300)
    assert await _audit(engine, "cancel_pending") == [
        ("rules.daily_realized_loss.limit", "900", "300")
    ]


async def test_environment_loosening_across_a_restart_waits(
    tmp_path: Path, clock: FakeClock, gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "riskman.yaml"
    config.write_text(
        f"holidays_file: {HOLIDAYS}\ndatabase: riskman.db\n"
        "rules:\n  daily_realized_loss: {enabled: true, limit: 300}\n"
        "  cooldown_after_loss: {enabled: true, tiers: [{loss: 100, cooldown: 600}]}\n",
        encoding="utf-8",
    )
    engine = await Engine.open(load_config(config), gateway, clock=clock, rule_classes=ALL_RULES)
    await engine.start()
    await engine.close()

    monkeypatch.setenv("RISKMAN_RULES__DAILY_REALIZED_LOSS__LIMIT", "1000")
    monkeypatch.setenv("RISKMAN_RULES__COOLDOWN_AFTER_LOSS__ENABLED", "false")
    engine = await Engine.open(load_config(config), gateway, clock=clock, rule_classes=ALL_RULES)
    try:
        await engine.start()
        rules = engine.settings.rules
        assert rules.daily_realized_loss.limit == Decimal(300)
        assert rules.cooldown_after_loss.enabled
        assert {p.key for p in engine.pending} == {
            "rules.daily_realized_loss.limit",
            "rules.cooldown_after_loss.enabled",
        }
    finally:
        await engine.close()


async def test_a_new_database_does_not_lift_the_rules_in_force(
    tmp_path: Path, clock: FakeClock, gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "etc" / "riskman.yaml"
    config.parent.mkdir()
    config.write_text(
        f"holidays_file: {HOLIDAYS}\ndatabase: {tmp_path / 'a' / 'riskman.db'}\n"
        "rules:\n  daily_realized_loss: {enabled: true, limit: 300}\n",
        encoding="utf-8",
    )
    (tmp_path / "a").mkdir()
    engine = await Engine.open(load_config(config), gateway, clock=clock, rule_classes=ALL_RULES)
    await engine.start()
    await engine.close()
    assert (config.parent / ANCHOR_NAME).exists()

    (tmp_path / "b").mkdir()
    fresh = tmp_path / "b" / "fresh.db"
    settings = load_config(
        config, database=fresh, rules={"daily_realized_loss": {"enabled": True, "limit": 5000}}
    )
    engine = await Engine.open(settings, gateway, clock=clock, rule_classes=ALL_RULES)
    try:
        await engine.start()
        assert engine.settings.rules.daily_realized_loss.limit == Decimal(300)
        assert [p.key for p in engine.pending] == ["rules.daily_realized_loss.limit"]
        assert "is new and empty" in caplog.text
        assert await _audit(engine, "new_database") == [(str(fresh), None, "new and empty")]
    finally:
        await engine.close()


async def test_an_account_dropped_by_the_environment_stays_guarded_until_the_reset(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    first = await make_engine(_loss(300), accounts=[ACC, OTHER])
    await first.close()
    engine = await make_engine(_loss(300), accounts=[OTHER])  # RISKMAN_ACCOUNTS='[1002]'
    assert engine.is_guarded(ACC)
    assert engine.settings.account_ids == [OTHER, ACC]
    assert [(p.account, p.key) for p in engine.pending] == [(ACC, "accounts")]
    await clock.set(engine.resets.next_reset())
    await settle(engine)
    assert not engine.is_guarded(ACC)


async def test_listing_accounts_after_guarding_all_waits(
    make_engine: EngineFactory,
) -> None:
    first = await make_engine(_loss(300))
    await first.close()
    engine = await make_engine(_loss(300), accounts=[OTHER])
    assert engine.guarded is None, "every account stays guarded until the reset"
    assert [p.key for p in engine.pending] == ["accounts"]


async def test_the_history_of_the_rules_in_force_is_in_the_database(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = await make_engine(_loss(300))
    await engine.apply_settings(make_settings(tmp_path, _loss(200)))
    rows = await engine.db.fetchall("SELECT why, in_force FROM rules_in_force ORDER BY id")
    limits = [json.loads(r["in_force"])["rules"]["daily_realized_loss"]["limit"] for r in rows]
    assert [r["why"] for r in rows] == ["start", "admin"]
    assert limits == [300, 200]


def test_settings_state_dir_is_beside_the_config_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert settings.state_dir == tmp_path
    assert isinstance(settings, Settings)

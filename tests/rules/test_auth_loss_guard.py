"""RULE-010 auth_loss_guard: `canTrade: false` flattens and locks until `canTrade: true`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from riskman.core.intents import ClearLock, Lock, plan
from riskman.core.locks import LockKind, Lockout, Unlock
from riskman.core.ports import AccountEvent, AccountSnapshot, OrderEvent, PositionEvent
from riskman.core.rules import CheckTrigger
from riskman.engine.engine import Engine
from riskman.rules.auth_loss_guard import AuthLossGuard
from tests.conftest import EngineFactory, make_settings
from tests.fakes import ES, MNQ, T0, FakeGateway, account, order, position, settle

ACC = 7
OTHER = 8
RULES = [AuthLossGuard]
CFG: dict[str, Any] = {"auth_loss_guard": {"enabled": True}}


async def _account(engine: Engine, can_trade: bool, account_id: int = ACC) -> None:
    await engine.process(AccountEvent(account(account_id, can_trade=can_trade)))
    await settle(engine)


async def _holding(engine: Engine, gateway: FakeGateway, account_id: int = ACC) -> None:
    """An open MNQ position and a working order on the account."""
    held = position(account_id, MNQ, 2)
    gateway.set_position(held)
    await engine.process(PositionEvent(held))
    working = order(account_id, 41)
    gateway.orders.setdefault(account_id, {})[working.id] = working
    await engine.process(OrderEvent(working))


def _lock(engine: Engine, account_id: int = ACC) -> Lockout | None:
    locks = [
        lock for lock in engine.lockouts.get_lockout_info(account_id) if lock.rule == "RULE-010"
    ]
    return locks[0] if locks else None


def _flattens(engine: Engine) -> int:
    return sum(1 for r in engine.recent_log() if r.rule == "RULE-010" and r.action == "flatten")


@pytest.mark.parametrize(
    ("reports", "locked", "flattens"),
    [
        pytest.param([True], False, 0, id="can-trade"),
        pytest.param([False], True, 1, id="first-report-cannot-trade"),
        pytest.param([True, False], True, 1, id="can-trade-turns-false"),
        pytest.param([False, False, False], True, 1, id="repeated-false-flattens-once"),
        pytest.param([False, True], False, 1, id="true-again-unlocks"),
        pytest.param([False, True, False], True, 2, id="false-again-locks-again"),
    ],
)
async def test_can_trade_reports(
    make_engine: EngineFactory,
    gateway: FakeGateway,
    reports: list[bool],
    locked: bool,
    flattens: int,
) -> None:
    engine = await make_engine(CFG, rule_classes=RULES)
    for can_trade in reports:
        await _holding(engine, gateway)
        await _account(engine, can_trade)
    assert (_lock(engine) is not None) == locked
    assert _flattens(engine) == flattens


async def test_cannot_trade_closes_everything_cancels_orders_and_locks_with_no_end(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(CFG, rule_classes=RULES)
    await _holding(engine, gateway)
    es = position(ACC, ES, 1, "5000")
    gateway.set_position(es)
    await engine.process(PositionEvent(es))
    await _account(engine, False)
    lock = _lock(engine)
    assert lock is not None
    assert (lock.kind, lock.unlock, lock.until) == (LockKind.LOCKOUT, Unlock.CAN_TRADE, None)
    assert lock.reason == "the gateway reports this account cannot trade (canTrade false)"
    assert {c.args for c in gateway.named("close_contract")} == {(ACC, MNQ), (ACC, ES)}
    assert [c.args for c in gateway.named("cancel_order")] == [(ACC, 41)]
    assert engine.state.get_all_positions(ACC) == []


async def test_position_opened_while_locked_is_closed_by_the_gate(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(CFG, rule_classes=RULES)
    await _account(engine, False)
    again = position(ACC, MNQ, 1)
    gateway.set_position(again)
    await engine.process(PositionEvent(again))
    await settle(engine)
    assert [c.args for c in gateway.named("close_contract")] == [(ACC, MNQ)]


async def test_unlock_clears_only_this_rules_lock_and_records_it(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine(CFG, rule_classes=RULES)
    await engine.lockouts.set_lockout(
        ACC, "daily loss", T0 + timedelta(hours=2), rule="RULE-003", unlock=Unlock.RESET
    )
    await _account(engine, False)
    await _account(engine, True)
    assert _lock(engine) is None
    assert [lock.rule for lock in engine.lockouts.get_lockout_info(ACC)] == ["RULE-003"]
    rows = await engine.db.fetchall(
        "SELECT cleared_by, clear_reason FROM lockouts WHERE rule = 'RULE-010'"
    )
    assert [tuple(row) for row in rows] == [
        ("RULE-010", "the gateway reports this account can trade again (canTrade true)")
    ]


async def test_restart_keeps_the_lock_until_the_gateway_says_can_trade(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(CFG, rule_classes=RULES)
    await _account(engine, False)
    await engine.close()

    again = await make_engine(CFG, rule_classes=RULES)
    assert _lock(again) is not None
    # Still cannot trade after the reconnect: no second flatten, the lock stays.
    await again.reconcile(AccountSnapshot(account(ACC, can_trade=False), [], [], []))
    await settle(again)
    assert _lock(again) is not None
    assert _flattens(again) == 1  # the log kept from before the restart
    await again.reconcile(AccountSnapshot(account(ACC, can_trade=True), [], [], []))
    await settle(again)
    assert _lock(again) is None


async def test_a_check_locks_on_the_known_state_but_never_unlocks(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine(CFG, rule_classes=RULES)
    rule = engine.rules[0]
    engine.state.update_account(account(ACC, can_trade=False))
    intents = rule.evaluate(ACC, CheckTrigger())
    assert any(isinstance(i, Lock) and i.unlock is Unlock.CAN_TRADE for i in intents)
    await _account(engine, False)
    # A stored account row can be older than the lock (written in batches): a check that
    # sees "can trade" there must not end the lock; only a fresh gateway report does.
    engine.state.update_account(account(ACC, can_trade=True))
    assert rule.evaluate(ACC, CheckTrigger()) == []


async def test_enabling_the_rule_locks_an_account_that_already_cannot_trade(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = await make_engine({"auth_loss_guard": {"enabled": False}}, rule_classes=RULES)
    await _account(engine, False)
    assert _lock(engine) is None
    await engine.apply_settings(make_settings(tmp_path, CFG))
    await settle(engine)
    assert _lock(engine) is not None


async def test_per_account_override_disables_the_guard(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine(
        CFG,
        rule_classes=RULES,
        accounts=[ACC, {"id": OTHER, "rules": {"auth_loss_guard": {"enabled": False}}}],
    )
    await _account(engine, False, ACC)
    await _account(engine, False, OTHER)
    assert _lock(engine, ACC) is not None
    assert _lock(engine, OTHER) is None


async def test_status_says_whether_the_account_can_trade(make_engine: EngineFactory) -> None:
    engine = await make_engine(CFG, rule_classes=RULES)
    rule = engine.rules[0]
    assert rule.status(ACC).value == "unknown"
    await _account(engine, False)
    status = rule.status(ACC)
    assert (status.value, status.used) == ("cannot trade", 1.0)
    assert status.detail == "locked until the gateway allows trading"
    await _account(engine, True)
    assert (rule.status(ACC).value, rule.status(ACC).detail) == ("can trade", "")


def test_plan_keeps_one_clear_per_rule_and_account() -> None:
    clear = ClearLock(rule="RULE-010", account_id=ACC, reason="can trade")
    result = plan([clear, clear, ClearLock(rule="RULE-010", account_id=OTHER, reason="x")])
    assert [(c.rule, c.account_id) for c in result.clears] == [
        ("RULE-010", ACC),
        ("RULE-010", OTHER),
    ]
    assert result.actions == [] and result.locks == []
    assert bool(result)

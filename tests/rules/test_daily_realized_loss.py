"""RULE-003 daily_realized_loss: at -limit (realized net of fees, + open P&L by default) the
account is flattened and locked until the daily reset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from riskman.core.locks import Unlock
from riskman.core.ports import PositionEvent, QuoteEvent, TradeEvent
from riskman.engine.engine import Engine
from riskman.rules.daily_realized_loss import DailyRealizedLoss
from tests.conftest import EngineFactory
from tests.fakes import ES, MNQ, T0, FakeGateway, open_position, position, quote, settle, trade

ACC = 7
RESET = datetime(2026, 11, 18, 23, 0, tzinfo=UTC)  # 17:00 CST on T0's day


def _cfg(limit: int = 500, include_unrealized: bool = True) -> dict[str, Any]:
    return {
        "daily_realized_loss": {
            "enabled": True,
            "limit": limit,
            "include_unrealized": include_unrealized,
        }
    }


def _locked(engine: Engine) -> bool:
    return any(lock.rule == "RULE-003" for lock in engine.lockouts.get_lockout_info(ACC))


@pytest.mark.parametrize(
    ("fills", "locked"),
    [
        pytest.param([("-499.99", "0")], False, id="below"),
        pytest.param([("-500", "0")], True, id="at-limit"),
        pytest.param([("-650", "0")], True, id="above"),
        pytest.param([("-495", "5")], True, id="fees-count"),
        pytest.param([("-300", "0"), ("-250", "0")], True, id="adds-up"),
        pytest.param([("-600", "0"), ("200", "0")], True, id="first-fill-already-breached"),
        pytest.param([("200", "0"), ("-600", "0")], False, id="net-of-winners"),
    ],
)
async def test_realized_loss_scenarios(
    make_engine: EngineFactory, gateway: FakeGateway, fills, locked
) -> None:
    engine = await make_engine(_cfg(), rule_classes=[DailyRealizedLoss])
    for pnl, fees in fills:
        await engine.process(TradeEvent(trade(ACC, pnl=pnl, fees=fees)))
    await settle(engine)
    assert _locked(engine) is locked
    if locked:
        lock = engine.lockouts.get_lockout_info(ACC)[0]
        assert lock.until == RESET and lock.unlock is Unlock.RESET
        assert any(r.rule == "RULE-003" and r.action == "flatten" for r in engine.recent_log())


async def test_open_loss_counts_when_include_unrealized(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(_cfg(), rule_classes=[DailyRealizedLoss])
    await engine.process(TradeEvent(trade(ACC, pnl="-300")))
    pos = position(ACC, ES, 1, "5000")
    await open_position(engine, gateway, pos)
    await engine.process(QuoteEvent(ES, quote("4996.25", bid="4996", ask="4996.25")))  # -$200 open
    await settle(engine)
    assert _locked(engine)
    assert gateway.named("close_contract")[0].args == (ACC, ES)


async def test_open_loss_ignored_when_realized_only(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(_cfg(include_unrealized=False), rule_classes=[DailyRealizedLoss])
    await engine.process(TradeEvent(trade(ACC, pnl="-300")))
    await engine.process(PositionEvent(position(ACC, ES, 1, "5000")))
    await engine.process(QuoteEvent(ES, quote("4990", bid="4990", ask="4990.25")))  # -$500 open
    await settle(engine)
    assert not _locked(engine)


async def test_stale_quote_never_triggers_by_itself(
    make_engine: EngineFactory, gateway: FakeGateway, clock
) -> None:
    engine = await make_engine(_cfg(), rule_classes=[DailyRealizedLoss])
    await engine.process(PositionEvent(position(ACC, ES, 1, "5000")))
    await engine.process(QuoteEvent(ES, quote("4999", bid="4999", ask="4999.25")))
    await clock.advance(engine.quotes.stale_after + 1)
    await engine.process(TradeEvent(trade(ACC, pnl="-450")))  # + a stale -$50 would be -$500
    await settle(engine)
    assert not _locked(engine)
    assert engine.rules[0].status(ACC).stale


async def test_lock_lasts_until_the_reset_and_survives_a_restart(
    make_engine: EngineFactory, gateway: FakeGateway, clock
) -> None:
    engine = await make_engine(_cfg(), rule_classes=[DailyRealizedLoss])
    await engine.process(TradeEvent(trade(ACC, pnl="-500")))
    await settle(engine)
    await engine.close()
    again = await make_engine(_cfg(), rule_classes=[DailyRealizedLoss])
    assert _locked(again)
    late = position(ACC, MNQ, 1)
    gateway.set_position(late)
    await again.process(PositionEvent(late))  # the gate closes what opens while locked
    await settle(again)
    assert gateway.named("close_contract")[-1].args == (ACC, MNQ)
    await clock.set(RESET)
    await settle(again)
    assert not _locked(again)
    assert again.pnl.get_daily_realized_pnl(ACC) == 0  # a new trading day


async def test_no_second_flatten_while_locked(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(_cfg(), rule_classes=[DailyRealizedLoss])
    await engine.process(TradeEvent(trade(ACC, pnl="-500")))
    await engine.process(TradeEvent(trade(ACC, pnl="-20")))
    await settle(engine)
    assert (
        sum(1 for r in engine.recent_log() if r.rule == "RULE-003" and r.action == "flatten") == 1
    )


async def test_per_account_limit(make_engine: EngineFactory, gateway: FakeGateway) -> None:
    engine = await make_engine(
        _cfg(),
        rule_classes=[DailyRealizedLoss],
        accounts=[ACC, {"id": 8, "rules": {"daily_realized_loss": {"limit": 100}}}],
    )
    await engine.process(TradeEvent(trade(ACC, pnl="-150")))
    await engine.process(TradeEvent(trade(8, pnl="-150")))
    await settle(engine)
    assert not _locked(engine)
    assert engine.lockouts.is_locked_out(8)
    assert RESET - timedelta(hours=1) > T0

"""Breach reports: the trigger, the rule's value and threshold, the price with its age and
source, every gateway call with timing and answer, the state afterwards; stored and found
again from an enforcement log entry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from riskman.core.ports import PositionEvent, QuoteEvent, TradeEvent
from riskman.core.views import BreachReport
from riskman.engine.reports import SETTLE
from riskman.rules.daily_realized_loss import DailyRealizedLoss
from tests.conftest import EngineFactory
from tests.fakes import ES, FakeGateway, position, quote, settle, trade

ACC = 7
LOSS = {"daily_realized_loss": {"enabled": True, "limit": 500, "include_unrealized": True}}


async def _breach(engine: Any, gateway: FakeGateway, clock: Any) -> None:
    await engine.process(TradeEvent(trade(ACC, pnl="-300", at=clock.now())))
    pos = position(ACC, ES, 1, "5000")
    gateway.set_position(pos)
    await engine.process(PositionEvent(pos))
    await clock.advance(2)  # the quote is 0 s old when it arrives, the report says so
    await engine.process(QuoteEvent(ES, quote("4995.75", bid="4995.75", ask="4996")))  # -$212.50
    await settle(engine)


async def test_a_breach_report_holds_trigger_numbers_price_calls_and_state_after(
    make_engine: EngineFactory, gateway: FakeGateway, clock: Any
) -> None:
    engine = await make_engine(LOSS, rule_classes=[DailyRealizedLoss])
    await _breach(engine, gateway, clock)
    assert engine.lockouts.is_locked_out(ACC)
    await clock.advance(SETTLE.total_seconds() + 0.1)
    await settle(engine)
    [report] = list(engine.reports.done)
    assert report.rule == "RULE-003" and report.account_id == ACC
    assert report.trigger.startswith(f"quote {ES}: last 4995.75")
    assert report.value == "-$512.50" and report.threshold == "-$500.00"
    [price] = report.prices
    assert (price.symbol, price.side, price.size, price.last, price.source) == (
        "ES",
        "LONG",
        1,
        "4995.75",
        "hub",
    )
    assert price.age == 0.0 and price.open_pnl == "-212.50"
    actions = [(c.action, c.result) for c in report.calls]
    assert ("lockout", "lockout") in actions
    assert any(a == "flatten" for a, _ in actions)
    assert all(c.latency_ms is not None for c in report.calls if c.action != "lockout")
    assert report.after is not None and report.after.status == "LOCKED"
    assert report.after.positions == []  # the fake gateway closed it
    assert any("RULE-003 lockout" in lock for lock in report.after.locks)


async def test_a_log_entry_finds_its_report_in_memory_and_after_a_restart(
    make_engine: EngineFactory, gateway: FakeGateway, clock: Any
) -> None:
    engine = await make_engine(LOSS, rule_classes=[DailyRealizedLoss])
    await _breach(engine, gateway, clock)
    await clock.advance(SETTLE.total_seconds() + 0.1)
    await settle(engine)
    entry = next(r for r in engine.recent_log() if r.action == "flatten")
    found = engine.reports.report_for(entry)
    assert found is not None and found.rule == "RULE-003"
    await engine.db.flush()
    await engine.close()
    again = await make_engine(LOSS, rule_classes=[DailyRealizedLoss])
    entry = next(r for r in again.recent_log() if r.action == "flatten")
    stored = await again.reports.load(entry)
    assert stored is not None and stored.id == found.id
    assert stored.prices == found.prices and stored.calls == found.calls
    assert stored.after == found.after
    assert isinstance(BreachReport.from_json(stored.to_json()), BreachReport)
    # A new breach numbers on from the stored ones.
    assert again.reports._next_id == found.id + 1


async def test_calls_long_after_a_breach_start_a_new_report(
    make_engine: EngineFactory, gateway: FakeGateway, clock: Any
) -> None:
    engine = await make_engine(LOSS, rule_classes=[DailyRealizedLoss])
    await _breach(engine, gateway, clock)
    await clock.advance(60)
    late = position(ACC, ES, 2, "5000")
    gateway.set_position(late)
    await engine.process(PositionEvent(late))  # the gate closes what opens while locked
    await settle(engine)
    await clock.advance(SETTLE.total_seconds() + 0.1)
    await settle(engine)
    reports = list(engine.reports.done)
    assert len(reports) == 2
    assert reports[1].ts - reports[0].ts >= timedelta(seconds=60)

"""At each daily reset the finished day's summary is stored (the History tab) and notified."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from riskman.core.ports import TradeEvent
from riskman.notify import Notifier
from riskman.report import history
from riskman.rules.daily_realized_loss import DailyRealizedLoss
from riskman.runtime import DailyHistory
from tests.conftest import EngineFactory
from tests.fakes import settle, trade
from tests.test_notify import Recorder

ACC = 7
RESET = datetime(2026, 11, 18, 23, 0, tzinfo=UTC)


async def test_the_reset_stores_and_notifies_the_days_summary(
    make_engine: EngineFactory, clock: Any
) -> None:
    engine = await make_engine(
        {"daily_realized_loss": {"enabled": True, "limit": 500}}, rule_classes=[DailyRealizedLoss]
    )
    sender = Recorder()
    notifier = Notifier.for_engine(engine, sender)
    assert notifier is not None
    notifier.start()
    recorder = DailyHistory(engine, notifier)
    await engine.process(TradeEvent(trade(ACC, pnl="-120", fees="3", at=clock.now())))
    await engine.process(TradeEvent(trade(ACC, pnl="-600", at=clock.now())))
    await settle(engine)
    await clock.set(RESET)
    await settle(engine)
    async with asyncio.timeout(10):
        await asyncio.gather(*recorder._tasks)
        await notifier.idle()
    [day] = await history(engine.db)
    assert day.day == date(2026, 11, 18) and day.account_id == ACC
    assert day.realized == Decimal("-723") and day.trades == 2
    assert day.locks == 1 and day.actions >= 1
    [summary] = [body for _, body in sender.sent if "day 2026-11-18" in body]
    assert summary.startswith("7 day 2026-11-18: P&L -$723.00 (fees $3.00), 2 trades,")
    assert summary.endswith("1 locks; rules that acted: RULE-003.")
    await recorder.close()
    await notifier.stop()


async def test_a_day_whose_reset_ran_while_nothing_recorded_it_is_stored_quietly(
    make_engine: EngineFactory, clock: Any
) -> None:
    rules = {"daily_realized_loss": {"enabled": True, "limit": 500}}
    engine = await make_engine(rules, rule_classes=[DailyRealizedLoss])
    await engine.process(TradeEvent(trade(ACC, pnl="80", at=clock.now())))
    await settle(engine)
    await engine.close()
    await clock.set(RESET)  # riskman was down at the reset: the restart catches it up
    again = await make_engine(rules, rule_classes=[DailyRealizedLoss])
    sender = Recorder()
    notifier = Notifier.for_engine(again, sender)
    assert notifier is not None
    notifier.start()
    recorder = DailyHistory(again, notifier)
    async with asyncio.timeout(10):
        await asyncio.gather(*recorder._tasks)
        await notifier.idle()
    [day] = await history(again.db)
    assert day.day == date(2026, 11, 18) and day.realized == Decimal(80)
    assert sender.sent == []  # old news: stored, not sent
    await recorder.close()
    await notifier.stop()

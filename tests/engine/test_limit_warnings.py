"""Warnings before a money limit: each `warnings.at` threshold fires once per trading day and
account (not again after a restart), for the daily loss, the max-loss distance and the profit
target."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from riskman.core.ports import AccountEvent, TradeEvent
from riskman.core.views import LimitWarning
from riskman.engine.engine import Engine
from riskman.rules.daily_realized_loss import DailyRealizedLoss
from riskman.rules.daily_realized_profit import DailyRealizedProfit
from riskman.rules.max_loss_limit import MaxLossLimit
from tests.conftest import EngineFactory
from tests.fakes import account, settle, trade

ACC = 7
RESET = datetime(2026, 11, 18, 23, 0, tzinfo=UTC)
LOSS = {"daily_realized_loss": {"enabled": True, "limit": 500, "include_unrealized": True}}


def _collect(engine: Engine) -> list[LimitWarning]:
    seen: list[LimitWarning] = []
    engine.subscribe(lambda c: seen.append(c) if isinstance(c, LimitWarning) else None)
    return seen


async def _loss(engine: Engine, pnl: str) -> None:
    await engine.process(TradeEvent(trade(ACC, pnl=pnl, at=engine.clock.now())))
    await settle(engine)
    engine.warnings.check_now()


async def test_each_threshold_fires_once_per_day(make_engine: EngineFactory) -> None:
    engine = await make_engine(LOSS, rule_classes=[DailyRealizedLoss])
    seen = _collect(engine)
    await _loss(engine, "-240")  # 48 %
    assert seen == []
    await _loss(engine, "-20")  # 52 %
    assert [w.threshold for w in seen] == [50]
    assert "RULE-003" in seen[0].text and "-$260.00" in seen[0].text
    await _loss(engine, "-5")  # still between 50 and 75: nothing new
    assert len(seen) == 1
    await _loss(engine, "-200")  # 93 %: 75 and 90 at once, one warning (the higher)
    assert [w.threshold for w in seen] == [50, 90]


async def test_no_warning_again_after_a_restart_but_again_the_next_day(
    make_engine: EngineFactory, clock: Any
) -> None:
    engine = await make_engine(LOSS, rule_classes=[DailyRealizedLoss])
    await _loss(engine, "-380")  # 76 %
    await engine.db.flush()
    await engine.close()
    again = await make_engine(LOSS, rule_classes=[DailyRealizedLoss])
    seen = _collect(again)
    await _loss(again, "-1")
    assert seen == []
    await clock.set(RESET)
    await settle(again)
    await _loss(again, "-260")  # 52 % of the new day's limit
    assert [w.threshold for w in seen] == [50]


async def test_profit_target_and_max_loss_distance_warn(make_engine: EngineFactory) -> None:
    rules = {
        "daily_realized_profit": {"enabled": True, "target": 1000},
        "max_loss_limit": {"enabled": True, "starting_balance": 50000, "drawdown": 2000},
    }
    engine = await make_engine(rules, rule_classes=[DailyRealizedProfit, MaxLossLimit])
    seen = _collect(engine)
    await engine.process(TradeEvent(trade(ACC, pnl="760")))
    await engine.process(AccountEvent(account(ACC, balance="48900")))  # 55 % of the way down
    await settle(engine)
    engine.warnings.check_now()
    assert sorted((w.rule, w.threshold) for w in seen) == [("RULE-013", 75), ("RULE-014", 50)]


async def test_warnings_off_with_an_empty_list(make_engine: EngineFactory) -> None:
    engine = await make_engine(LOSS, rule_classes=[DailyRealizedLoss], warnings={"at": []})
    seen = _collect(engine)
    await _loss(engine, "-450")
    assert seen == []


async def test_consistency_warns_once_when_today_would_be_too_big_a_share(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine({}, rule_classes=[], consistency={"max_day_share": 0.5})
    for day, pnl in (("2026-11-16", "400"), ("2026-11-17", "-100")):
        await engine.db.execute(
            "INSERT INTO daily_pnl (account_id, trading_day, realized, gross, fees, fills, "
            "updated) VALUES (?, ?, ?, ?, '0', 1, '')",
            (ACC, day, pnl, pnl),
        )
    await engine.warnings._load_days(engine.resets.trading_day())
    seen = _collect(engine)
    await _loss(engine, "290")  # 290 of 590: 49 %
    assert seen == []
    best, today, total = engine.warnings.consistency(ACC)
    assert (round(best, 3), round(today, 3), total) == (Decimal("0.678"), Decimal("0.492"), 590)
    await _loss(engine, "20")  # 310 of 610: 51 %
    assert [w.rule for w in seen] == ["consistency"]
    assert (
        "today is 51% of your total profit $610.00 (at most 50% counts for one day)" in seen[0].text
    )
    await _loss(engine, "100")
    assert len(seen) == 1  # once a day


async def test_the_trailing_daily_loss_warns_too(make_engine: EngineFactory) -> None:
    from riskman.rules.trailing_daily_loss import TrailingDailyLoss

    rules = {"trailing_daily_loss": {"enabled": True, "limit": 1000, "trail": "realized"}}
    engine = await make_engine(rules, rule_classes=[TrailingDailyLoss])
    seen = _collect(engine)
    await engine.process(AccountEvent(account(ACC, balance="50000")))
    await engine.process(AccountEvent(account(ACC, balance="49200")))  # $800 of the $1,000
    await settle(engine)
    engine.warnings.check_now()
    assert [(w.rule, w.threshold) for w in seen] == [("RULE-016", 75)]

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from riskman.core.enums import OrderSide
from riskman.core.facts import PositionChange
from riskman.core.ports import PositionEvent, QuoteEvent, TradeEvent
from riskman.engine.pnl import open_pnl
from tests.conftest import EngineFactory
from tests.fakes import ES, MNQ, T0, position, quote, trade

ACC = 7


async def test_realized_pnl_counts_closing_fills_net_of_all_fees(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine()
    await engine.process(TradeEvent(trade(ACC, pnl=None, fees="0.37")))  # opening fill
    await engine.process(TradeEvent(trade(ACC, pnl="-50", fees="0.37")))  # closing fill
    assert engine.pnl.get_daily_realized_pnl(ACC) == Decimal("-50.74")
    totals = engine.pnl.day_totals(ACC)
    assert (totals.gross, totals.fees, totals.fills) == (Decimal(-50), Decimal("0.74"), 2)


async def test_same_fill_twice_counts_once(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    fill = trade(ACC, pnl="-100", fees="1", trade_id=42)
    await engine.process(TradeEvent(fill))
    await engine.process(TradeEvent(fill))
    assert engine.pnl.get_daily_realized_pnl(ACC) == Decimal(-101)
    rows = await engine.db.fetchall("SELECT * FROM trades")
    assert len(rows) == 1


async def test_voided_fill_never_counts_and_a_later_void_is_taken_back(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine()
    await engine.process(TradeEvent(trade(ACC, pnl="-80", voided=True)))
    assert engine.pnl.get_daily_realized_pnl(ACC) == 0
    fill = trade(ACC, pnl="-100", fees="1", trade_id=77)
    await engine.process(TradeEvent(fill))
    await engine.process(TradeEvent(fill.model_copy(update={"voided": True})))
    assert engine.pnl.get_daily_realized_pnl(ACC) == 0
    row = await engine.db.fetchone("SELECT voided FROM trades WHERE trade_id = 77")
    assert row is not None and row[0] == 1


async def test_the_stored_day_total_moves_with_each_stored_fill_and_void(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine()
    fills = [
        trade(ACC, pnl="-100", fees="1.5", trade_id=81),
        trade(ACC, pnl="40", fees="0.5", trade_id=82),
        trade(ACC, pnl=None, fees="0.25", trade_id=83),
    ]
    for fill in fills:
        await engine.process(TradeEvent(fill))
    await engine.process(TradeEvent(fills[1].model_copy(update={"voided": True})))
    await engine.process(TradeEvent(fills[1].model_copy(update={"voided": True})))  # again
    await engine.db.flush()
    row = await engine.db.fetchone("SELECT realized, gross, fees, fills FROM daily_pnl")
    assert row is not None
    assert (Decimal(row[0]), Decimal(row[1]), Decimal(row[2]), row[3]) == (
        Decimal("-101.75"),
        Decimal("-100"),
        Decimal("1.75"),
        2,
    )
    assert engine.pnl.get_daily_realized_pnl(ACC) == Decimal("-101.75")


async def test_fill_belongs_to_the_trading_day_of_its_own_timestamp(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine()
    yesterday = T0 - timedelta(days=1)
    await engine.process(TradeEvent(trade(ACC, pnl="-300", at=yesterday)))
    assert engine.pnl.get_daily_realized_pnl(ACC) == 0
    await engine.process(TradeEvent(trade(ACC, pnl="25", at=T0)))
    assert engine.pnl.get_daily_realized_pnl(ACC) == 25


def test_open_pnl_arithmetic_long_and_short() -> None:
    tick, value = Decimal("0.25"), Decimal("12.50")
    assert open_pnl(Decimal("5001"), Decimal("5000"), tick, value, 2) == Decimal(100)
    assert open_pnl(Decimal("5001"), Decimal("5000"), tick, value, -2) == Decimal(-100)


async def test_unrealized_uses_bid_for_longs_and_skips_stale_quotes(
    make_engine: EngineFactory, clock
) -> None:
    engine = await make_engine()
    await engine.process(PositionEvent(position(ACC, ES, 1, "5000")))
    await engine.process(QuoteEvent(ES, quote("5002", bid="5001.75", ask="5002.25")))
    result = engine.pnl.calculate_unrealized_pnl(ACC)
    assert result.total == Decimal("87.5") and result.complete
    await clock.advance(engine.quotes.stale_after + 1)
    stale = engine.pnl.calculate_unrealized_pnl(ACC)
    assert stale.total == 0 and stale.unpriced == (ES,)


async def test_trade_counter_counts_orders_by_fill_time_in_rolling_windows(
    make_engine: EngineFactory, clock
) -> None:
    engine = await make_engine()
    await clock.advance(3600)
    now = clock.now()
    for i, ago in enumerate((3000, 1200, 50, 10)):
        await engine.process(
            TradeEvent(trade(ACC, pnl=None, at=now - timedelta(seconds=ago), order_id=500 + i))
        )
    # a partial fill of an order already counted is not a new trade
    await engine.process(
        TradeEvent(trade(ACC, pnl=None, at=now - timedelta(seconds=5), order_id=503))
    )
    counts = engine.counter.get_trade_counts(ACC)
    assert (counts.minute, counts.hour, counts.session) == (2, 4, 4)
    await clock.advance(51)
    counts = engine.counter.get_trade_counts(ACC)
    assert (counts.minute, counts.hour) == (0, 4)


async def test_restart_restores_pnl_counts_and_positions(make_engine: EngineFactory, clock) -> None:
    engine = await make_engine()
    await engine.process(TradeEvent(trade(ACC, pnl="-120", fees="2", order_id=1)))
    await engine.process(TradeEvent(trade(ACC, pnl=None, order_id=2, side=OrderSide.BID)))
    await engine.process(PositionEvent(position(ACC, MNQ, 2)))
    await engine.close()

    await clock.advance(30)
    again = await make_engine()
    assert again.pnl.get_daily_realized_pnl(ACC) == Decimal(-122)
    assert again.counter.get_trade_counts(ACC).session == 2
    restored = again.state.get_position(ACC, MNQ)
    assert restored is not None and restored.size == 2


def test_position_change_flags() -> None:
    from riskman.core.facts import PositionState

    long2 = PositionState(position(ACC, MNQ, 2), T0, T0)
    long3 = PositionState(position(ACC, MNQ, 3), T0, T0)
    short1 = PositionState(position(ACC, MNQ, 1, short=True), T0, T0)
    assert PositionChange(None, long2).opened and PositionChange(None, long2).grew
    assert PositionChange(long2, long3).grew and not PositionChange(long2, long3).opened
    assert not PositionChange(long3, long2).grew
    assert PositionChange(long2, short1).opened  # a reversal is a new position
    assert PositionChange(long2, None).closed

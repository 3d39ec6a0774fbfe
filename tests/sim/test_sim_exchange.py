"""Matching and P&L arithmetic of the simulated broker, without any network."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskman.core.enums import OrderSide, OrderStatus, OrderType, PositionType
from riskman.gateway import codes
from riskman.sim import DEFAULT_CONTRACTS
from riskman.sim.exchange import (
    ACCOUNT_EVENT,
    ORDER_EVENT,
    POSITION_EVENT,
    TRADE_EVENT,
    BracketRequest,
    Exchange,
    Outcome,
    SimAccount,
    UserEvent,
)
from riskman.sim.market import Market

MNQ = "CON.F.US.MNQ.Z26"
BUY, SELL = OrderSide.BID, OrderSide.ASK
D = Decimal


@dataclass
class Book:
    market: Market
    exchange: Exchange
    events: list[UserEvent] = field(default_factory=list)

    def price(
        self, last: str, bid: str | None = None, ask: str | None = None, cid: str = MNQ
    ) -> None:
        self.market.set_price(cid, last, bid, ask)
        self.exchange.on_quote(cid)

    def place(
        self,
        side: OrderSide,
        size: int,
        kind: OrderType = OrderType.MARKET,
        *,
        cid: str = MNQ,
        account: int = 1001,
        **prices: object,
    ) -> Outcome:
        return self.exchange.place(account, cid, kind, side, size, **prices)

    def targets(self) -> list[str]:
        return [e.target for e in self.events]

    def order_events(self, order_id: int) -> list[UserEvent]:
        return [e for e in self.events if e.target == ORDER_EVENT and e.payload.id == order_id]

    @property
    def balance(self) -> Decimal:
        return self.exchange.accounts[1001].balance


@pytest.fixture
def book() -> Book:
    market = Market(DEFAULT_CONTRACTS, seed=1)
    events: list[UserEvent] = []
    exchange = Exchange(market, events.append)
    exchange.add_account(SimAccount(1001, "A", D(50000)))
    exchange.add_account(SimAccount(1002, "B", D(50000)))
    result = Book(market, exchange, events)
    result.price("20000")  # bid 20000, ask 20000.25
    return result


def test_market_buy_fills_at_the_ask_and_opens_a_long(book: Book) -> None:
    outcome = book.place(BUY, 2)

    assert outcome.ok and outcome.order_id is not None
    [position] = book.exchange.positions(1001)
    assert (position.type, position.size, position.average_price) == (
        PositionType.LONG,
        2,
        D("20000.25"),
    )
    [trade] = book.exchange.trades(1001)
    assert trade.price == D("20000.25")
    assert trade.profit_and_loss is None  # an opening fill
    assert trade.fees == D("0.74")
    assert book.balance == D("49999.26")


def test_a_fill_streams_order_open_filled_then_trade_position_account(book: Book) -> None:
    outcome = book.place(BUY, 1)

    assert book.targets() == [
        ORDER_EVENT,
        ORDER_EVENT,
        TRADE_EVENT,
        POSITION_EVENT,
        ACCOUNT_EVENT,
    ]
    opened, filled = book.order_events(outcome.order_id or 0)
    assert (opened.payload.status, opened.action) == (OrderStatus.OPEN, 1)
    assert (filled.payload.status, filled.action) == (OrderStatus.FILLED, 2)
    assert filled.payload.fill_volume == 1
    assert filled.payload.filled_price == D("20000.25")
    trade_event = book.events[2]
    assert trade_event.action == 0
    assert book.events[-1].payload.balance == D("49999.63")


def test_adding_to_a_position_keeps_one_row_with_the_weighted_average(book: Book) -> None:
    book.place(BUY, 1)  # 20000.25
    book.price("20010")
    book.place(BUY, 3)  # 20010.25

    [position] = book.exchange.positions(1001)
    assert position.size == 4
    assert position.average_price == D("20007.75")
    assert book.exchange.trades(1001)[-1].profit_and_loss is None


def test_partial_close_of_a_long_realises_the_closed_part(book: Book) -> None:
    book.place(BUY, 3)  # 20000.25
    book.price("20010")

    outcome = book.exchange.partial_close(1001, MNQ, 1)  # sells at the bid, 20010

    assert outcome.code == codes.PartialClosePositionErrorCode.Success
    trade = book.exchange.trades(1001)[-1]
    assert trade.profit_and_loss == D("19.50")  # 39 ticks x $0.50 x 1
    [position] = book.exchange.positions(1001)
    assert (position.size, position.average_price) == (2, D("20000.25"))
    assert book.balance == D(50000) - D("0.37") * 4 + D("19.50")


@pytest.mark.parametrize(
    ("exit_last", "expected"),
    [("19990", D("39.00")), ("20010", D("-41.00"))],
    ids=["winning-short", "losing-short"],
)
def test_short_pnl_has_the_sign_of_the_move(book: Book, exit_last: str, expected: Decimal) -> None:
    book.place(SELL, 2)  # hits the bid, 20000
    book.price(exit_last)  # ask = exit_last + 0.25

    book.exchange.close_contract(1001, MNQ)

    pnl = book.exchange.trades(1001)[-1].profit_and_loss
    assert pnl == expected
    assert book.exchange.positions(1001) == []


def test_a_fill_that_crosses_zero_closes_then_reverses(book: Book) -> None:
    book.place(BUY, 2)  # 20000.25
    [long_position] = book.exchange.positions(1001)
    book.price("20005")
    book.events.clear()

    book.place(SELL, 5)  # 20005

    trade = book.exchange.trades(1001)[-1]
    assert trade.size == 5
    assert trade.profit_and_loss == D("19.00")  # 19 ticks x $0.50 x the 2 closed
    assert trade.fees == D("1.85")
    closed, opened = [e for e in book.events if e.target == POSITION_EVENT]
    assert closed.action == 2
    assert (closed.payload.id, closed.payload.size, closed.payload.type) == (
        long_position.id,
        0,
        PositionType.UNDEFINED,
    )
    assert opened.payload.id != long_position.id
    assert (opened.payload.type, opened.payload.size) == (PositionType.SHORT, 3)
    assert opened.payload.average_price == D("20005")


@pytest.mark.parametrize(
    ("contract_id", "fee", "tick_value"),
    [
        ("CON.F.US.MNQ.Z26", "0.37", "0.50"),
        ("CON.F.US.ENQ.Z26", "1.40", "5.00"),
        ("CON.F.US.EP.Z26", "1.40", "12.50"),
        ("CON.F.US.MES.Z26", "0.37", "1.25"),
        ("CON.F.US.RTY.Z26", "1.40", "5.00"),
        ("CON.F.US.M2K.Z26", "0.37", "0.50"),
        ("CON.F.US.YM.Z26", "1.40", "5.00"),
        ("CON.F.US.MYM.Z26", "0.37", "0.50"),
        ("CON.F.US.CLE.F27", "1.50", "10.00"),
        ("CON.F.US.MCLE.F27", "0.50", "1.00"),
        ("CON.F.US.GCE.G27", "1.60", "10.00"),
        ("CON.F.US.MGC.G27", "0.50", "1.00"),
    ],
)
def test_round_turn_pnl_and_fees_per_contract(
    book: Book, contract_id: str, fee: str, tick_value: str
) -> None:
    spec = book.market.contract(contract_id)
    entry_bid = spec.start_price
    book.price(str(entry_bid), cid=contract_id)
    book.place(BUY, 3, cid=contract_id)  # at the ask: entry + 1 tick
    # Exit 10 ticks above the entry fill, on the bid.
    exit_bid = entry_bid + spec.tick_size * 11
    book.price(str(exit_bid), cid=contract_id)

    book.exchange.close_contract(1001, contract_id)

    opening, closing = book.exchange.trades(1001)
    assert opening.fees == closing.fees == D(fee) * 3
    assert closing.profit_and_loss == D(tick_value) * 10 * 3
    assert book.balance == D(50000) + D(tick_value) * 30 - D(fee) * 6


def test_resting_limit_fills_at_its_price_when_the_market_reaches_it(book: Book) -> None:
    outcome = book.place(BUY, 1, OrderType.LIMIT, limit_price=D("19990"))
    assert outcome.ok
    assert [o.status for o in book.exchange.working_orders(1001)] == [OrderStatus.OPEN]

    book.price("19995")
    assert book.exchange.positions(1001) == []

    book.price("19985")  # gapped through the limit

    [trade] = book.exchange.trades(1001)
    assert trade.price == D("19990")
    assert book.exchange.working_orders(1001) == []


def test_marketable_limit_fills_at_once_at_the_ask(book: Book) -> None:
    book.place(BUY, 1, OrderType.LIMIT, limit_price=D("20010"))

    [trade] = book.exchange.trades(1001)
    assert trade.price == D("20000.25")


@pytest.mark.parametrize(
    ("kind", "side", "joined", "fill_last"),
    [
        (OrderType.JOIN_BID, BUY, D("20000"), "19999.75"),
        (OrderType.JOIN_ASK, SELL, D("20000.25"), "20000.5"),
    ],
)
def test_join_orders_rest_at_the_touch_and_fill_when_it_trades(
    book: Book, kind: OrderType, side: OrderSide, joined: Decimal, fill_last: str
) -> None:
    outcome = book.place(side, 1, kind)

    [order] = book.exchange.working_orders(1001)
    assert (order.id, order.type, order.limit_price) == (outcome.order_id, kind, joined)
    book.price(fill_last)
    assert book.exchange.trades(1001)[-1].price == joined


def test_sell_stop_triggers_on_the_last_price_and_fills_at_the_bid(book: Book) -> None:
    book.place(BUY, 1)
    book.place(SELL, 1, OrderType.STOP, stop_price=D("19990"))

    book.price("19990.25")
    assert len(book.exchange.positions(1001)) == 1

    book.price("19989", bid="19988.75", ask="19989.25")

    stop_fill = book.exchange.trades(1001)[-1]
    assert stop_fill.price == D("19988.75")
    assert book.exchange.positions(1001) == []


@pytest.mark.parametrize(
    ("side", "stop"), [(BUY, "19999.75"), (SELL, "20000.25")], ids=["buy-below", "sell-above"]
)
def test_a_stop_already_through_the_market_is_rejected(
    book: Book, side: OrderSide, stop: str
) -> None:
    outcome = book.place(side, 1, OrderType.STOP, stop_price=D(stop))

    assert outcome.code == codes.PlaceOrderErrorCode.OrderRejected
    assert outcome.message and "stop" in outcome.message


def test_stop_limit_becomes_a_resting_limit_after_its_stop_trades(book: Book) -> None:
    book.place(BUY, 1, OrderType.STOP_LIMIT, stop_price=D("20010"), limit_price=D("20009"))

    book.price("20010")  # triggers; ask 20010.25 is above the limit, so it rests
    assert book.exchange.positions(1001) == []
    book.price("20009")

    [trade] = book.exchange.trades(1001)
    assert trade.price == D("20009")


def test_trailing_stop_takes_an_absolute_trail_price_and_follows_the_high(book: Book) -> None:
    book.place(BUY, 1)
    outcome = book.place(SELL, 1, OrderType.TRAILING_STOP, trail_price=D("19995"))
    assert outcome.ok
    [working] = book.exchange.working_orders(1001)
    assert (working.trail_distance, working.trail_price, working.stop_price) == (
        20,
        D("5.00"),
        D("19995"),
    )

    book.price("20010")
    [working] = book.exchange.working_orders(1001)
    assert working.stop_price == D("20005")

    book.price("20006")
    assert len(book.exchange.positions(1001)) == 1
    book.price("20005")

    assert book.exchange.trades(1001)[-1].price == D("20005")
    assert book.exchange.positions(1001) == []


@pytest.mark.parametrize(
    ("trail_price", "message"),
    [
        (None, codes.TRAIL_DISTANCE_NOT_SET),
        (D("19995.1"), codes.TRAIL_PRICE_NOT_ALIGNED),
        (D("19749.75"), codes.TRAIL_DISTANCE_TOO_LARGE),  # 1001 ticks
        (D("20000"), codes.TRAIL_DISTANCE_NOT_SET),
    ],
)
def test_trailing_stop_rejections_use_the_documented_messages(
    book: Book, trail_price: Decimal | None, message: str
) -> None:
    outcome = book.place(SELL, 1, OrderType.TRAILING_STOP, trail_price=trail_price)

    assert (outcome.code, outcome.message) == (codes.PlaceOrderErrorCode.OrderRejected, message)


def test_trail_of_exactly_1000_ticks_is_accepted(book: Book) -> None:
    assert book.place(SELL, 1, OrderType.TRAILING_STOP, trail_price=D("19750")).ok


def _bracket(book: Book, kind: OrderType = OrderType.MARKET, **prices: object) -> Outcome:
    return book.place(
        BUY,
        2,
        kind,
        custom_tag="entry-1",
        stop_loss=BracketRequest(-10, OrderType.STOP),
        take_profit=BracketRequest(20, OrderType.LIMIT),
        **prices,
    )


def test_bracket_legs_go_suspended_then_open_then_the_other_leg_cancels(book: Book) -> None:
    outcome = book.place(
        BUY,
        2,
        OrderType.LIMIT,
        limit_price=D("19990"),
        custom_tag="entry-1",
        stop_loss=BracketRequest(-10, OrderType.STOP),
        take_profit=BracketRequest(20, OrderType.LIMIT),
    )
    entry_id = outcome.order_id
    entry, stop, target = book.exchange.working_orders(1001)
    assert entry.id == entry_id and entry.status is OrderStatus.OPEN
    for leg in (stop, target):
        assert leg.status is OrderStatus.SUSPENDED
        assert leg.parent_order_id == entry_id
        assert leg.limit_price is None and leg.stop_price is None
        assert leg.side is SELL and leg.size == 2
    assert (stop.custom_tag, target.custom_tag) == ("entry-1-SL", "entry-1-TP")
    assert target.linked_order_id == stop.id
    assert [o.id for o in book.exchange.working_orders(1001, include_suspended=False)] == [entry_id]

    book.price("19990")  # the entry fills at 19990

    stop, target = book.exchange.working_orders(1001)
    assert (stop.status, stop.type, stop.stop_price) == (
        OrderStatus.OPEN,
        OrderType.STOP,
        D("19987.50"),
    )
    assert (target.status, target.type, target.limit_price) == (
        OrderStatus.OPEN,
        OrderType.LIMIT,
        D("19995.00"),
    )

    book.price("19995")  # the target fills

    orders = {o.id: o for o in book.exchange.orders(1001)}
    assert orders[target.id].status is OrderStatus.FILLED
    assert orders[stop.id].status is OrderStatus.CANCELLED
    assert [e.payload.status for e in book.order_events(stop.id)] == [
        OrderStatus.SUSPENDED,
        OrderStatus.OPEN,
        OrderStatus.CANCELLED,
    ]
    assert book.exchange.positions(1001) == []
    assert book.exchange.trades(1001)[-1].profit_and_loss == D("20.00")


def test_short_bracket_puts_the_stop_above_and_the_target_below(book: Book) -> None:
    book.place(
        SELL,
        1,
        stop_loss=BracketRequest(8, OrderType.STOP),
        take_profit=BracketRequest(-12, OrderType.LIMIT),
    )  # fills at the bid, 20000

    stop, target = book.exchange.working_orders(1001)
    assert stop.side is BUY and stop.stop_price == D("20002")
    assert target.side is BUY and target.limit_price == D("19997")


def test_cancelling_an_unfilled_entry_cancels_its_suspended_legs(book: Book) -> None:
    outcome = _bracket(book, OrderType.LIMIT, limit_price=D("19990"))

    assert book.exchange.cancel(1001, outcome.order_id or 0).ok

    assert book.exchange.working_orders(1001) == []
    assert {o.status for o in book.exchange.orders(1001)} == {OrderStatus.CANCELLED}


def test_brackets_in_position_mode_are_rejected_with_a_real_order_id(book: Book) -> None:
    book.exchange.accounts[1001].bracket_mode = "position"

    outcome = _bracket(book)

    assert outcome.code == codes.PlaceOrderErrorCode.OrderRejected
    assert outcome.message == (
        "Brackets cannot be used with Position Brackets. You must enable Auto OCO Brackets."
    )
    assert outcome.order_id is not None
    [order] = book.exchange.orders(1001)
    assert (order.id, order.status) == (outcome.order_id, OrderStatus.REJECTED)
    assert book.exchange.positions(1001) == []


def test_custom_tag_is_unique_per_account_for_all_time(book: Book) -> None:
    assert book.place(BUY, 1, custom_tag="t1").ok  # filled at once: no longer working
    duplicate = book.place(BUY, 1, custom_tag="t1")
    assert duplicate.code == codes.PlaceOrderErrorCode.OrderRejected
    assert duplicate.order_id is None
    assert book.place(BUY, 1, custom_tag="t1", account=1002).ok

    _bracket(book)  # entry-1, entry-1-SL, entry-1-TP
    assert not book.place(BUY, 1, custom_tag="entry-1-SL").ok


def test_trading_lock_rejects_new_orders_but_allows_closes(book: Book) -> None:
    book.place(BUY, 2)
    book.exchange.set_can_trade(1001, False)

    refused = book.place(BUY, 1)
    assert refused.code == codes.PlaceOrderErrorCode.AccountViolation
    assert book.exchange.partial_close(1001, MNQ, 1).ok
    assert book.exchange.close_contract(1001, MNQ).ok
    assert book.exchange.positions(1001) == []
    account_events = [e for e in book.events if e.target == ACCOUNT_EVENT]
    assert any(e.payload.can_trade is False for e in account_events)


def test_close_and_partial_close_use_their_own_error_codes(book: Book) -> None:
    close, partial = book.exchange.close_contract, book.exchange.partial_close
    assert close(9999, MNQ).code == codes.ClosePositionErrorCode.AccountNotFound == 1
    assert (
        close(1001, "CON.F.US.XYZ.Z26").code == codes.ClosePositionErrorCode.ContractNotFound == 3
    )
    assert close(1001, MNQ).code == codes.ClosePositionErrorCode.PositionNotFound == 2
    assert partial(1001, MNQ, 1).code == codes.PartialClosePositionErrorCode.PositionNotFound == 2

    book.place(BUY, 2)
    assert partial(1001, MNQ, 3).code == codes.PartialClosePositionErrorCode.InvalidCloseSize == 5
    assert partial(1001, MNQ, 0).code == 5

    book.market.halted.add(MNQ)
    assert close(1001, MNQ) == Outcome(codes.ClosePositionErrorCode.OrderRejected, None)  # 5
    assert partial(1001, MNQ, 1) == Outcome(
        codes.PartialClosePositionErrorCode.OrderRejected, None
    )  # 6
    assert book.place(BUY, 1).code == codes.PlaceOrderErrorCode.OutsideTradingHours


def test_cancel_and_modify_codes(book: Book) -> None:
    resting = book.place(BUY, 1, OrderType.LIMIT, limit_price=D("19990")).order_id or 0
    filled = book.place(BUY, 1).order_id or 0
    exchange = book.exchange

    assert exchange.cancel(9999, resting).code == codes.CancelOrderErrorCode.AccountNotFound
    assert exchange.cancel(1002, resting).code == codes.CancelOrderErrorCode.OrderNotFound
    assert exchange.cancel(1001, filled).code == codes.CancelOrderErrorCode.OrderNotFound
    assert exchange.modify(1001, 424242, size=2).code == codes.ModifyOrderErrorCode.OrderNotFound
    bad_tick = exchange.modify(1001, resting, limit_price=D("19990.1"))
    assert bad_tick.code == codes.ModifyOrderErrorCode.Rejected
    assert (
        exchange.modify(1001, resting, stop_price=D("19990")).code
        == codes.ModifyOrderErrorCode.Rejected
    )

    # A modify that makes the order marketable fills it at once, at the market.
    assert exchange.modify(1001, resting, size=3, limit_price=D("20001")).ok
    assert exchange.trades(1001)[-1].price == D("20000.25")
    assert exchange.trades(1001)[-1].size == 3


def test_modify_of_a_suspended_leg_is_rejected(book: Book) -> None:
    _bracket(book, OrderType.LIMIT, limit_price=D("19990"))
    _, stop, _ = book.exchange.working_orders(1001)

    outcome = book.exchange.modify(1001, stop.id, size=1)

    assert outcome.code == codes.ModifyOrderErrorCode.Rejected


def test_control_prices_round_to_the_tick_and_orders_must_be_aligned(book: Book) -> None:
    book.price("20000.13")
    quote = book.market.quote(MNQ)
    assert (quote.last, quote.bid, quote.ask) == (D("20000.25"), D("20000.25"), D("20000.50"))

    unaligned = book.place(BUY, 1, OrderType.LIMIT, limit_price=D("19990.1"))
    assert unaligned.code == codes.PlaceOrderErrorCode.OrderRejected
    assert unaligned.message == "Invalid limit price. Price is not aligned to tick size."


def test_average_price_keeps_nine_decimals(book: Book) -> None:
    book.place(BUY, 1)  # 20000.25
    book.price("20000.25")
    book.place(BUY, 2)  # 20000.50

    [position] = book.exchange.positions(1001)
    assert position.average_price == D("20000.416666667")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-40, 40), st.integers(-4, 4).filter(bool)),
        min_size=1,
        max_size=25,
    )
)
def test_realised_pnl_adds_up_to_the_cash_flow_of_a_round_trip(
    moves: list[tuple[int, int]],
) -> None:
    """Whatever the path, once flat: sum of realised P&L == the cash flow of all fills
    (within the per-fill cent rounding), and balance == start + P&L - fees exactly."""
    market = Market(DEFAULT_CONTRACTS, seed=1)
    exchange = Exchange(market, lambda _: None)
    exchange.add_account(SimAccount(1001, "A", D(50000)))
    spec = market.contract(MNQ)
    net = 0
    for offset, quantity in moves:
        market.set_price(MNQ, spec.start_price + spec.tick_size * offset)
        side = BUY if quantity > 0 else SELL
        assert exchange.place(1001, MNQ, OrderType.MARKET, side, abs(quantity)).ok
        net += quantity
        held = exchange.positions(1001)
        assert sum(p.signed_size for p in held) == net
        assert len(held) <= 1
    if net:
        assert exchange.close_contract(1001, MNQ).ok

    trades = exchange.trades(1001)
    realised = sum((t.profit_and_loss or D(0)) for t in trades)
    cash = sum(-t.side.sign * t.size * t.price for t in trades)
    expected = cash / spec.tick_size * spec.tick_value
    closing_fills = sum(1 for t in trades if t.profit_and_loss is not None)
    assert abs(realised - expected) <= D("0.005") * closing_fills
    fees = sum(t.fees for t in trades)
    assert exchange.accounts[1001].balance == D(50000) + realised - fees

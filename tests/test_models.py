"""Payload parsing: wrapped and bare user events, nullable fields, and typed errors only."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskman.core.enums import OrderStatus
from riskman.core.models import (
    PayloadError,
    Position,
    Trade,
    parse_market_trades,
    parse_quote,
    parse_user_event,
)
from riskman.symbols import root_of

POSITION = {
    "id": 456,
    "accountId": 123,
    "contractId": "CON.F.US.MNQ.Z26",
    "creationTimestamp": "2026-11-18T14:45:00.1234567+00:00",
    "type": 1,
    "size": 2,
    "averagePrice": 21000.25,
}
TRADE = {
    "id": 8604,
    "accountId": 123,
    "contractId": "CON.F.US.EP.Z26",
    "creationTimestamp": "2026-11-18T14:46:00Z",
    "price": 6335.25,
    "profitAndLoss": None,
    "fees": 1.4,
    "side": 0,
    "size": 1,
    "voided": False,
    "orderId": 777,
}
ORDER = {
    "id": 9,
    "accountId": 123,
    "contractId": "CON.F.US.EP.Z26",
    "symbolId": "F.US.EP",
    "creationTimestamp": "2026-11-18T14:46:00Z",
    "updateTimestamp": None,
    "status": 8,
    "type": 4,
    "side": 1,
    "size": 1,
    "limitPrice": None,
    "stopPrice": None,
    "fillVolume": 0,
    "filledPrice": None,
    "customTag": "x-SL",
    "parentOrderId": 8,
    "someNewField": [1, 2],
}


def test_user_events_are_accepted_wrapped_and_bare() -> None:
    bare = parse_user_event("GatewayUserPosition", [POSITION])
    wrapped = parse_user_event("GatewayUserPosition", [{"action": 1, "data": POSITION}])
    assert bare == wrapped
    assert isinstance(bare, Position)
    assert bare.average_price == Decimal("21000.25")
    assert bare.creation_timestamp is not None and bare.creation_timestamp.tzinfo is not None


def test_position_close_is_size_zero_whatever_the_type() -> None:
    closed = parse_user_event(
        "GatewayUserPosition", [{"action": 2, "data": {**POSITION, "size": 0, "type": 0}}]
    )
    assert isinstance(closed, Position) and closed.is_closed


def test_nullable_fields_and_unknown_fields() -> None:
    order = parse_user_event("GatewayUserOrder", [ORDER])
    assert order.status is OrderStatus.SUSPENDED and order.status.is_working
    assert order.stop_price is None and order.update_timestamp is None
    fill = parse_user_event("GatewayUserTrade", [TRADE])
    assert isinstance(fill, Trade) and not fill.is_closing and fill.net_pnl == Decimal("-1.4")


def test_float_prices_keep_their_decimal_value() -> None:
    fill = parse_user_event("GatewayUserTrade", [{**TRADE, "price": 0.1, "profitAndLoss": -37.5}])
    assert fill.price == Decimal("0.1") and fill.profit_and_loss == Decimal("-37.5")


def test_market_events_are_contract_then_data_and_trades_may_be_arrays() -> None:
    contract_id, quote = parse_quote(
        ["CON.F.US.EP.Z26", {"symbol": "F.US.EP", "lastPrice": 6335.25, "bestBid": 6335}]
    )
    assert contract_id == "CON.F.US.EP.Z26" and quote.best_ask is None
    _, trades = parse_market_trades(
        ["CON.F.US.EP.Z26", [{"price": 1, "volume": 2}, {"price": 2, "volume": 1}]]
    )
    assert len(trades) == 2


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("GatewayUserPosition", []),
        ("GatewayUserPosition", [None]),
        ("GatewayUserPosition", [{**POSITION, "size": -1}]),
        ("GatewayUserPosition", [{**POSITION, "averagePrice": "NaN"}]),
        ("GatewayUserPosition", [{**POSITION, "averagePrice": float("inf")}]),
        ("GatewayUserPosition", [{**POSITION, "size": 10**40}]),
        ("GatewayUserOrder", [{**ORDER, "status": 99}]),
        ("GatewayUserTrade", [{**TRADE, "creationTimestamp": "yesterday"}]),
        ("GatewayUserTrade", [{k: v for k, v in TRADE.items() if k != "accountId"}]),
        ("GatewayUserSomething", [{}]),
    ],
)
def test_bad_payloads_raise_one_typed_error(name: str, args: list[Any]) -> None:
    with pytest.raises(PayloadError):
        parse_user_event(name, args)


def test_contract_roots() -> None:
    assert root_of("CON.F.US.EP.Z26") == "EP"
    assert root_of("F.US.MNQ") == "MNQ"
    assert root_of("CON.F.US.MCLE.F27") == "MCLE"


_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=20,
)


def _mutated(base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(list(base)), _json, max_size=4).map(
        lambda patch: {**base, **patch}
    )


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(
        ["GatewayUserPosition", "GatewayUserTrade", "GatewayUserOrder", "GatewayUserAccount"]
    ),
    payload=st.one_of(_json, _mutated(POSITION), _mutated(TRADE), _mutated(ORDER)),
    wrap=st.booleans(),
)
def test_any_user_payload_parses_or_raises_payload_error(
    name: str, payload: Any, wrap: bool
) -> None:
    args = [{"action": 1, "data": payload}] if wrap else [payload]
    with contextlib.suppress(PayloadError):
        parse_user_event(name, args)


@settings(max_examples=200, deadline=None)
@given(args=st.one_of(_json, st.tuples(st.text(max_size=30), _json).map(list)))
def test_any_market_payload_parses_or_raises_payload_error(args: Any) -> None:
    for parse in (parse_quote, parse_market_trades):
        with contextlib.suppress(PayloadError):
            parse(args)

"""RULE-004 daily_unrealized_loss: one position's open P&L at or below -limit closes it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from riskman.core.clock import FakeClock
from riskman.core.models import Position, Quote
from riskman.core.rules import CheckTrigger
from riskman.rules.daily_unrealized_loss import DailyUnrealizedLoss
from tests.conftest import EngineFactory
from tests.fakes import ES, MNQ, FakeGateway, open_position, position, quote, send_quote, settle

ACC = 7
OTHER = 8
RULES = [DailyUnrealizedLoss]


def _cfg(limit: int = 300) -> dict[str, Any]:
    return {"daily_unrealized_loss": {"enabled": True, "limit": limit}}


def _closes(gateway: FakeGateway) -> list[tuple[Any, ...]]:
    return [c.args for c in gateway.named("close_contract")]


# MNQ: $0.50 a tick of 0.25 = $2 a point a contract; ES: $50 a point a contract.
@pytest.mark.parametrize(
    ("pos", "q", "closed"),
    [
        pytest.param(position(ACC, MNQ, 1), quote("20850.25", bid="20850.25"), False, id="below"),
        pytest.param(position(ACC, MNQ, 1), quote("20850", bid="20850"), True, id="at-limit"),
        pytest.param(position(ACC, MNQ, 1), quote("20800", bid="20800"), True, id="above"),
        pytest.param(position(ACC, MNQ, 2), quote("20925", bid="20925"), True, id="size-counts"),
        pytest.param(
            position(ACC, MNQ, 1, short=True), quote("21150", ask="21149.75"), False, id="short-ok"
        ),
        pytest.param(
            position(ACC, MNQ, 1, short=True), quote("21150", ask="21150"), True, id="short-at"
        ),
        pytest.param(
            position(ACC, MNQ, 1),
            quote("20900", bid="20850", ask="20900"),
            True,
            id="long-marked-at-bid",
        ),
        pytest.param(position(ACC, MNQ, 1), quote("20850"), True, id="last-when-no-bid"),
        pytest.param(position(ACC, ES, 1, "5000"), quote("4994", bid="4994"), True, id="es"),
        pytest.param(
            position(ACC, MNQ, 1), quote("21500", bid="21500"), False, id="winning-position"
        ),
    ],
)
async def test_open_loss_against_the_limit(
    make_engine: EngineFactory, gateway: FakeGateway, pos: Position, q: Quote, closed: bool
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await open_position(engine, gateway, pos)
    await send_quote(engine, pos.contract_id, q)
    await settle(engine)
    assert _closes(gateway) == ([(ACC, pos.contract_id)] if closed else [])
    if closed:
        assert engine.state.get_position(ACC, pos.contract_id) is None


async def test_close_reason_says_the_position_and_the_numbers(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await send_quote(engine, MNQ, quote("20843.75", bid="20843.75"))
    await settle(engine)
    record = next(r for r in engine.recent_log() if r.action == "close")
    assert (record.rule, record.target, record.result) == ("RULE-004", MNQ, "ok")
    assert record.reason == "MNQ long 1 open P&L -$312.50 reached the -$300.00 limit"


async def test_only_the_losing_position_is_closed(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await open_position(engine, gateway, position(ACC, ES, 1, "5000"))
    await send_quote(engine, ES, quote("5010", bid="5010"))
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await send_quote(engine, MNQ, quote("20800", bid="20800"))
    await settle(engine)
    assert _closes(gateway) == [(ACC, MNQ)]
    assert engine.state.get_position(ACC, ES) is not None


async def test_position_opened_into_a_loss_is_closed_on_the_position_event(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await open_position(engine, gateway, position(OTHER, MNQ, 1, short=True))  # MNQ quotes are live
    await send_quote(engine, MNQ, quote("20800", bid="20800"))
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await settle(engine)
    assert _closes(gateway) == [(ACC, MNQ)]


async def test_a_quote_from_before_anyone_held_the_contract_never_closes(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    # Nobody held MNQ, so its quotes were not subscribed: the one kept is not live.
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await send_quote(engine, MNQ, quote("20800", bid="20800"))
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await settle(engine)
    assert _closes(gateway) == []
    await send_quote(engine, MNQ, quote("20800", bid="20800"))  # the live quote
    await settle(engine)
    assert _closes(gateway) == [(ACC, MNQ)]


async def test_no_quote_never_closes(make_engine: EngineFactory, gateway: FakeGateway) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await open_position(engine, gateway, position(ACC, MNQ, 1, "99999"))  # absurd entry, no quote
    await settle(engine)
    assert _closes(gateway) == []
    status = engine.rules[0].status(ACC)
    assert (status.value, status.stale) == ("no quote", True)


async def test_stale_quote_never_closes_and_status_says_stale(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await send_quote(engine, MNQ, quote("20900", bid="20900"))  # -$200: fine
    await clock.advance(engine.settings.quotes.stale_after + 1)
    # The position grows to 3 at the same average: -$600 at the old price, but that price
    # is stale, so it decides nothing.
    await open_position(engine, gateway, position(ACC, MNQ, 3))
    assert engine.rules[0].evaluate(ACC, CheckTrigger()) == []
    await settle(engine)
    assert _closes(gateway) == []
    assert engine.rules[0].status(ACC).stale is True
    await send_quote(engine, MNQ, quote("20900", bid="20900"))  # fresh again: -$600
    await settle(engine)
    assert _closes(gateway) == [(ACC, MNQ)]


async def test_repeated_quotes_while_the_close_is_in_flight_send_one_close(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    gate = gateway.hold.setdefault("close_contract", asyncio.Event())
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    for bid in ("20850", "20840", "20830"):
        await send_quote(engine, MNQ, quote(bid, bid=bid))
    await gateway.wait_call("close_contract")
    gate.set()
    await settle(engine)
    assert _closes(gateway) == [(ACC, MNQ)]


async def test_restart_in_the_middle_keeps_enforcing(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await send_quote(engine, MNQ, quote("20900", bid="20900"))
    await settle(engine)
    await engine.close()

    again = await make_engine(_cfg(), rule_classes=RULES)
    assert again.state.get_position(ACC, MNQ) is not None
    await send_quote(again, MNQ, quote("20849", bid="20849"))
    await settle(again)
    assert _closes(gateway) == [(ACC, MNQ)]


async def test_per_account_override_of_the_limit(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(
        _cfg(),
        rule_classes=RULES,
        accounts=[ACC, {"id": OTHER, "rules": {"daily_unrealized_loss": {"limit": 500}}}],
    )
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await open_position(engine, gateway, position(OTHER, MNQ, 1))
    await send_quote(engine, MNQ, quote("20800", bid="20800"))  # -$400 for both
    await settle(engine)
    assert _closes(gateway) == [(ACC, MNQ)]
    assert engine.state.get_position(OTHER, MNQ) is not None


async def test_status_shows_the_worst_position(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    assert engine.rules[0].status(ACC).value == "flat"
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await send_quote(engine, MNQ, quote("20925", bid="20925"))
    await open_position(engine, gateway, position(ACC, ES, 1, "5000"))
    await send_quote(engine, ES, quote("5001", bid="5001"))
    status = engine.rules[0].status(ACC)
    assert (status.value, status.limit, status.used) == ("-$150.00", "-$300.00", 0.5)
    assert status.detail == "worst: MNQ long 1"
    assert status.stale is False

"""RULE-005 max_unrealized_profit: one position's open P&L at or above the target closes it."""

from __future__ import annotations

from typing import Any

import pytest

from riskman.core.clock import FakeClock
from riskman.core.models import Position, Quote
from riskman.rules.max_unrealized_profit import MaxUnrealizedProfit
from tests.conftest import EngineFactory
from tests.fakes import ES, MNQ, FakeGateway, open_position, position, quote, send_quote, settle

ACC = 7
OTHER = 8
RULES = [MaxUnrealizedProfit]


def _cfg(target: int = 1000) -> dict[str, Any]:
    return {"max_unrealized_profit": {"enabled": True, "target": target}}


def _closes(gateway: FakeGateway) -> list[tuple[Any, ...]]:
    return [c.args for c in gateway.named("close_contract")]


# ES: $12.50 a tick of 0.25 = $50 a point a contract.
@pytest.mark.parametrize(
    ("pos", "q", "closed"),
    [
        pytest.param(
            position(ACC, ES, 1, "5000"), quote("5019.75", bid="5019.75"), False, id="below"
        ),
        pytest.param(position(ACC, ES, 1, "5000"), quote("5020", bid="5020"), True, id="at"),
        pytest.param(position(ACC, ES, 1, "5000"), quote("5030", bid="5030"), True, id="above"),
        pytest.param(position(ACC, ES, 2, "5000"), quote("5010", bid="5010"), True, id="size"),
        pytest.param(
            position(ACC, ES, 1, "5000", short=True),
            quote("4980", ask="4980.25"),
            False,
            id="short-below",
        ),
        pytest.param(
            position(ACC, ES, 1, "5000", short=True), quote("4980", ask="4980"), True, id="short-at"
        ),
        pytest.param(
            position(ACC, ES, 1, "5000"),
            quote("5020", bid="5019.75", ask="5020"),
            False,
            id="long-marked-at-bid-not-last",
        ),
        pytest.param(position(ACC, ES, 1, "5000"), quote("4900", bid="4900"), False, id="loss"),
        pytest.param(position(ACC, MNQ, 1), quote("21500", bid="21500"), True, id="mnq"),
    ],
)
async def test_open_profit_against_the_target(
    make_engine: EngineFactory, gateway: FakeGateway, pos: Position, q: Quote, closed: bool
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await open_position(engine, gateway, pos)
    await send_quote(engine, pos.contract_id, q)
    await settle(engine)
    assert _closes(gateway) == ([(ACC, pos.contract_id)] if closed else [])


async def test_take_profit_reason_and_log(make_engine: EngineFactory, gateway: FakeGateway) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await open_position(engine, gateway, position(ACC, ES, 1, "5000"))
    await send_quote(engine, ES, quote("5020.25", bid="5020.25"))
    await settle(engine)
    record = next(r for r in engine.recent_log() if r.action == "close")
    assert (record.rule, record.target, record.result) == ("RULE-005", ES, "ok")
    assert record.reason == "take profit: ES long 1 open P&L $1,012.50 reached the $1,000.00 target"


async def test_stale_quote_never_takes_the_profit(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await send_quote(engine, ES, quote("5030", bid="5030"))
    await clock.advance(engine.settings.quotes.stale_after + 1)
    await open_position(engine, gateway, position(ACC, ES, 1, "5000"))  # +$1,500 at a stale price
    await settle(engine)
    assert _closes(gateway) == []
    assert engine.rules[0].status(ACC).stale is True


async def test_restart_in_the_middle_keeps_enforcing(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await open_position(engine, gateway, position(ACC, ES, 1, "5000"))
    await send_quote(engine, ES, quote("5010", bid="5010"))
    await engine.close()

    again = await make_engine(_cfg(), rule_classes=RULES)
    await send_quote(again, ES, quote("5025", bid="5025"))
    await settle(again)
    assert _closes(gateway) == [(ACC, ES)]


async def test_per_account_override_of_the_target(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(
        _cfg(),
        rule_classes=RULES,
        accounts=[ACC, {"id": OTHER, "rules": {"max_unrealized_profit": {"target": 2000}}}],
    )
    await open_position(engine, gateway, position(ACC, ES, 1, "5000"))
    await open_position(engine, gateway, position(OTHER, ES, 1, "5000"))
    await send_quote(engine, ES, quote("5030", bid="5030"))  # +$1,500 for both
    await settle(engine)
    assert _closes(gateway) == [(ACC, ES)]


async def test_status_shows_the_best_position(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await open_position(engine, gateway, position(ACC, ES, 1, "5000"))
    await send_quote(engine, ES, quote("5005", bid="5005"))
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await send_quote(engine, MNQ, quote("20990", bid="20990"))
    status = engine.rules[0].status(ACC)
    assert (status.value, status.limit, status.used) == ("$250.00", "$1,000.00", 0.25)
    assert status.detail == "best: ES long 1"

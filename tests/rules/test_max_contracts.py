"""RULE-001 max_contracts: open contracts above the limit are reduced (newest first) or closed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from riskman.core.ports import PositionEvent
from riskman.engine.engine import Engine
from riskman.rules.max_contracts import MaxContracts
from tests.conftest import EngineFactory
from tests.fakes import ES, MES, MNQ, NQ, T0, FakeGateway, position, settle

ACC = 7
MNQ_H27 = "CON.F.US.MNQ.H27"


def _cfg(**overrides: Any) -> dict[str, Any]:
    return {"max_contracts": {"enabled": True, "limit": 5, **overrides}}


async def _open(engine: Engine, gateway: FakeGateway, pos: Any, clock: Any) -> None:
    gateway.set_position(pos)
    await engine.process(PositionEvent(pos))
    await clock.advance(1)  # so "newest" is well defined


@pytest.mark.parametrize(
    ("sizes", "partials"),
    [
        pytest.param([4], [], id="below"),
        pytest.param([5], [], id="at-limit"),
        pytest.param([6], [(MNQ, 1)], id="above-by-one"),
        pytest.param([3, 4], [(ES, 2)], id="newest-reduced-first"),
        pytest.param([3, 1, 4], [(ES, 3)], id="newest-only-as-much-as-needed"),
    ],
)
async def test_reduce_to_limit_scenarios(
    make_engine: EngineFactory,
    gateway: FakeGateway,
    clock,
    sizes: list[int],
    partials: list[tuple[str, int]],
) -> None:
    engine = await make_engine(_cfg(), rule_classes=[MaxContracts])
    contracts = [MNQ, NQ, ES][: len(sizes)] if len(sizes) == 3 else [MNQ, ES][: len(sizes)]
    for contract_id, size in zip(contracts, sizes, strict=True):
        await _open(engine, gateway, position(ACC, contract_id, size), clock)
    await settle(engine)
    sent = [(c.args[1], c.args[2]) for c in gateway.named("partial_close_contract")]
    assert sent == partials
    assert engine.state.get_position_count(ACC) == min(sum(sizes), 5)


async def test_close_all_action_flattens_the_account(
    make_engine: EngineFactory, gateway: FakeGateway, clock
) -> None:
    engine = await make_engine(_cfg(limit=2, action="close_all"), rule_classes=[MaxContracts])
    await _open(engine, gateway, position(ACC, MNQ, 2), clock)
    await _open(engine, gateway, position(ACC, ES, 1, "5000"), clock)
    await settle(engine)
    assert {c.args[1] for c in gateway.named("close_contract")} == {MNQ, ES}
    assert engine.state.get_all_positions(ACC) == []


async def test_net_count_nets_expiries_of_one_symbol(
    make_engine: EngineFactory, gateway: FakeGateway, clock
) -> None:
    engine = await make_engine(_cfg(limit=3, count="net"), rule_classes=[MaxContracts])
    await _open(engine, gateway, position(ACC, MNQ, 3), clock)
    await _open(engine, gateway, position(ACC, MNQ_H27, 2, short=True), clock)  # calendar spread
    await settle(engine)
    assert gateway.named("partial_close_contract") == []


async def test_gross_count_adds_every_contract(
    make_engine: EngineFactory, gateway: FakeGateway, clock
) -> None:
    engine = await make_engine(_cfg(limit=3, count="gross"), rule_classes=[MaxContracts])
    await _open(engine, gateway, position(ACC, MNQ, 3), clock)
    await _open(engine, gateway, position(ACC, MNQ_H27, 2, short=True), clock)
    await settle(engine)
    # the newest position is cut whole: a full close, not a partial one
    assert [c.args[1] for c in gateway.named("close_contract")] == [MNQ_H27]
    assert gateway.named("partial_close_contract") == []


async def test_micros_count_a_tenth_with_contract_weights(
    make_engine: EngineFactory, gateway: FakeGateway, clock
) -> None:
    rules = {**_cfg(limit=2), "contract_weights": {"enabled": True, "micro_weight": 0.1}}
    engine = await make_engine(rules, rule_classes=[MaxContracts])
    await _open(engine, gateway, position(ACC, MES, 10, "5000"), clock)  # = 1 mini
    await _open(engine, gateway, position(ACC, ES, 1, "5000"), clock)  # = 2 in all: at the limit
    await settle(engine)
    assert gateway.named("partial_close_contract") == [] and gateway.named("close_contract") == []
    await _open(engine, gateway, position(ACC, MES, 15, "5000"), clock)  # 1.5 + 1 = 2.5 > 2
    await settle(engine)
    assert [(c.args[1], c.args[2]) for c in gateway.named("partial_close_contract")] == [(MES, 5)]


async def test_limit_still_enforced_after_a_restart(
    make_engine: EngineFactory, gateway: FakeGateway, clock
) -> None:
    engine = await make_engine(_cfg(limit=2), rule_classes=[MaxContracts])
    await _open(engine, gateway, position(ACC, MNQ, 2), clock)
    await engine.close()
    again = await make_engine(_cfg(limit=2), rule_classes=[MaxContracts])
    await _open(again, gateway, position(ACC, MNQ, 3), clock)
    await settle(again)
    assert [(c.args[1], c.args[2]) for c in gateway.named("partial_close_contract")] == [(MNQ, 1)]


async def test_per_account_limit_override(
    make_engine: EngineFactory, gateway: FakeGateway, clock
) -> None:
    engine = await make_engine(
        _cfg(limit=5),
        rule_classes=[MaxContracts],
        accounts=[ACC, {"id": 8, "rules": {"max_contracts": {"limit": 1}}}],
    )
    await _open(engine, gateway, position(ACC, MNQ, 3), clock)
    await _open(engine, gateway, position(8, MNQ, 3), clock)
    await settle(engine)
    assert [(c.args[0], c.args[2]) for c in gateway.named("partial_close_contract")] == [(8, 2)]


async def test_status_shows_count_and_use(
    make_engine: EngineFactory, gateway: FakeGateway, clock
) -> None:
    engine = await make_engine(_cfg(limit=4), rule_classes=[MaxContracts])
    await _open(engine, gateway, position(ACC, MNQ, 3), clock)
    status = engine.rules[0].status(ACC)
    assert (status.value, status.limit, status.used) == ("3", "4", 0.75)
    assert clock.now() > T0 + timedelta(seconds=0)

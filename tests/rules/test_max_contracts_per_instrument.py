"""RULE-002 max_contracts_per_instrument against a real engine and the recording gateway."""

from __future__ import annotations

from typing import Any

import pytest

from riskman.core.clock import FakeClock
from riskman.core.intents import ClosePosition
from riskman.core.ports import AccountSnapshot
from riskman.core.rules import CheckTrigger
from riskman.rules.max_contracts_per_instrument import MaxContractsPerInstrument
from tests.conftest import EngineFactory
from tests.fakes import ES, MNQ, RTY, FakeGateway, account, open_position, position, settle

ACC = 7
OTHER = 8
MNQ_H27 = "CON.F.US.MNQ.H27"
RULES = [MaxContractsPerInstrument]


def _cfg(**overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "enabled": True,
        "default_limit": 3,
        "limits": {"MNQ": 2},
        "unknown_symbol": "allow",
        "action": "reduce_to_limit",
    }
    cfg.update(overrides)
    return {"max_contracts_per_instrument": cfg}


def _partials(gateway: FakeGateway) -> list[tuple[Any, ...]]:
    return [c.args for c in gateway.named("partial_close_contract")]


def _closes(gateway: FakeGateway) -> list[tuple[Any, ...]]:
    return [c.args for c in gateway.named("close_contract")]


@pytest.mark.parametrize(
    ("rules", "opened", "partials", "closes"),
    [
        pytest.param(_cfg(), [(MNQ, 1)], [], [], id="listed-below-limit"),
        pytest.param(_cfg(), [(MNQ, 2)], [], [], id="listed-at-limit"),
        pytest.param(_cfg(), [(MNQ, 3)], [(ACC, MNQ, 1)], [], id="listed-above-limit-reduced"),
        pytest.param(_cfg(), [(MNQ, 5)], [(ACC, MNQ, 3)], [], id="listed-far-above-limit"),
        pytest.param(_cfg(), [(ES, 3)], [], [], id="default-limit-at"),
        pytest.param(_cfg(), [(ES, 4)], [(ACC, ES, 1)], [], id="default-limit-above"),
        pytest.param(
            _cfg(limits={"ES": 1}), [(ES, 2)], [(ACC, ES, 1)], [], id="ticker-ES-means-gateway-EP"
        ),
        pytest.param(_cfg(default_limit=None), [(RTY, 40)], [], [], id="unlisted-no-default"),
        pytest.param(
            _cfg(unknown_symbol="block"), [(RTY, 1)], [], [(ACC, RTY)], id="unlisted-blocked"
        ),
        pytest.param(
            _cfg(unknown_symbol="block"), [(MNQ, 2)], [], [], id="listed-ok-when-others-blocked"
        ),
        pytest.param(_cfg(action="close"), [(MNQ, 2)], [], [], id="close-action-at-limit"),
        pytest.param(
            _cfg(action="close"), [(MNQ, 3)], [], [(ACC, MNQ)], id="close-action-above-limit"
        ),
        pytest.param(
            _cfg(),
            [(MNQ, 2), (MNQ_H27, -1)],
            [],
            [],
            id="expiries-net-within-root",
        ),
        pytest.param(
            _cfg(),
            [(MNQ, 2), (MNQ_H27, 1)],
            [],
            [(ACC, MNQ_H27)],
            id="expiries-add-up-newest-cut",
        ),
        pytest.param(
            {**_cfg(), "contract_weights": {"enabled": True, "micro_weight": 0.1}},
            [(MNQ, 20)],
            [],
            [],
            id="micro-weight-at-limit",
        ),
        pytest.param(
            {**_cfg(), "contract_weights": {"enabled": True, "micro_weight": 0.1}},
            [(MNQ, 23)],
            [(ACC, MNQ, 3)],
            [],
            id="micro-weight-above-limit",
        ),
    ],
)
async def test_contracts_per_symbol_against_the_limit(
    make_engine: EngineFactory,
    gateway: FakeGateway,
    clock: FakeClock,
    rules: dict[str, Any],
    opened: list[tuple[str, int]],
    partials: list[tuple[Any, ...]],
    closes: list[tuple[Any, ...]],
) -> None:
    engine = await make_engine(rules, rule_classes=RULES)
    for contract_id, size in opened:
        await clock.advance(10)  # each later position is the newer one
        await open_position(engine, gateway, position(ACC, contract_id, abs(size), short=size < 0))
        await settle(engine)
    assert _partials(gateway) == partials
    assert _closes(gateway) == closes


async def test_reduce_leaves_the_symbol_exactly_at_its_limit(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await open_position(engine, gateway, position(ACC, MNQ, 3))
    await settle(engine)
    assert engine.state.get_contract_count(ACC, MNQ) == 2
    record = next(r for r in engine.recent_log() if r.action == "reduce")
    assert (record.rule, record.result) == ("RULE-002", "ok")
    assert record.reason == "MNQ 3 contracts open, limit 2"


async def test_other_symbols_are_not_touched_when_one_is_reduced(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await open_position(engine, gateway, position(ACC, ES, 3, "5000"))
    await open_position(engine, gateway, position(ACC, MNQ, 4))
    await settle(engine)
    assert _partials(gateway) == [(ACC, MNQ, 2)]
    assert engine.state.get_contract_count(ACC, ES) == 3


async def test_blocked_symbol_is_closed_even_when_its_expiries_net_to_zero(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(
        _cfg(limits={"ES": 2}, unknown_symbol="block"), rule_classes=RULES, link=False
    )
    # Not linked: the closes are recorded but no position events come back, so both legs of
    # the spread are open when the rule looks.
    engine.state.update_position(position(ACC, MNQ, 1))
    engine.state.update_position(position(ACC, MNQ_H27, 1, short=True))
    intents = engine.rules[0].evaluate(ACC, CheckTrigger())
    assert all(isinstance(i, ClosePosition) for i in intents)
    assert sorted(i.contract_id for i in intents if isinstance(i, ClosePosition)) == sorted(
        [MNQ, MNQ_H27]
    )
    assert intents[0].reason == "MNQ is not an allowed symbol (unknown symbols are blocked)"


async def test_restart_keeps_enforcing_a_position_that_grew_while_down(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await open_position(engine, gateway, position(ACC, MNQ, 2))
    await settle(engine)
    await engine.close()

    grown = position(ACC, MNQ, 4)
    gateway.set_position(grown)
    again = await make_engine(_cfg(), rule_classes=RULES)
    assert again.state.get_contract_count(ACC, MNQ) == 2  # warm start from the database
    await again.reconcile(AccountSnapshot(account(ACC), [grown], [], []))
    await settle(again)
    assert _partials(gateway) == [(ACC, MNQ, 2)]
    assert again.state.get_contract_count(ACC, MNQ) == 2


async def test_lower_limit_after_restart_is_enforced_by_the_start_check(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(_cfg(limits={"MNQ": 5}), rule_classes=RULES)
    await open_position(engine, gateway, position(ACC, MNQ, 4))
    await settle(engine)
    assert _partials(gateway) == []
    await engine.close()

    again = await make_engine(_cfg(limits={"MNQ": 3}), rule_classes=RULES)
    await settle(again)
    assert _partials(gateway) == [(ACC, MNQ, 1)]


async def test_per_account_override_of_a_symbol_limit(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(
        _cfg(),
        rule_classes=RULES,
        accounts=[
            ACC,
            {"id": OTHER, "rules": {"max_contracts_per_instrument": {"limits": {"MNQ": 5}}}},
        ],
    )
    await open_position(engine, gateway, position(ACC, MNQ, 4))
    await open_position(engine, gateway, position(OTHER, MNQ, 4))
    await settle(engine)
    assert _partials(gateway) == [(ACC, MNQ, 2)]
    assert engine.state.get_contract_count(OTHER, MNQ) == 4


@pytest.mark.parametrize(
    ("rules", "opened", "value", "limit", "used"),
    [
        pytest.param(_cfg(), [], "0", "per symbol", 0.0, id="flat"),
        pytest.param(_cfg(), [(ES, 1), (MNQ, 2)], "MNQ 2", "2", 1.0, id="worst-root-shown"),
        pytest.param(_cfg(default_limit=None), [(RTY, 9)], "RTY 9", "no limit", None, id="none"),
    ],
)
async def test_status_shows_the_worst_symbol(
    make_engine: EngineFactory,
    gateway: FakeGateway,
    rules: dict[str, Any],
    opened: list[tuple[str, int]],
    value: str,
    limit: str,
    used: float | None,
) -> None:
    engine = await make_engine(rules, rule_classes=RULES)
    for contract_id, size in opened:
        await open_position(engine, gateway, position(ACC, contract_id, size))
    status = engine.rules[0].status(ACC)
    assert (status.value, status.limit, status.used) == (value, limit, used)


async def test_status_of_a_blocked_symbol_held_says_blocked(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine(_cfg(unknown_symbol="block"), rule_classes=RULES, link=False)
    engine.state.update_position(position(ACC, RTY, 1))
    engine.state.update_position(position(ACC, MNQ, 2))
    status = engine.rules[0].status(ACC)
    assert (status.value, status.limit) == ("RTY 1", "blocked")
    assert "others blocked" in status.detail

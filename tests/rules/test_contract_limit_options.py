"""Options of RULE-001/002 from issue 15: the scaling plan (`max_contracts.scaling`) and
working orders counting toward the limits (`count_orders`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from riskman.core.enums import OrderSide, OrderStatus, OrderType
from riskman.core.ports import AccountEvent, OrderEvent, PositionEvent, TradeEvent
from riskman.engine.engine import Engine
from riskman.rules.max_contracts import MaxContracts
from riskman.rules.max_contracts_per_instrument import MaxContractsPerInstrument
from tests.conftest import EngineFactory
from tests.fakes import ES, MNQ, FakeGateway, account, order, position, settle, trade

ACC = 7
RESET = datetime(2026, 11, 18, 23, 0, tzinfo=UTC)
PLAN = [{"balance_above": 1500, "limit": 3}, {"balance_above": 2000, "limit": 5}]


def _scaling(**more: Any) -> dict[str, Any]:
    return {
        "max_contracts": {
            "enabled": True,
            "limit": 2,
            "scaling": PLAN,
            "starting_balance": 50000,
            **more,
        }
    }


async def _balance(engine: Engine, balance: str) -> None:
    await engine.process(AccountEvent(account(ACC, balance)))


async def _hold(engine: Engine, gateway: FakeGateway, size: int, contract: str = MNQ) -> None:
    pos = position(ACC, contract, size)
    gateway.set_position(pos)
    await engine.process(PositionEvent(pos))
    await settle(engine)


def _rule(engine: Engine) -> MaxContracts:
    rule = engine.rules[0]
    assert isinstance(rule, MaxContracts)
    return rule


# --- scaling --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("balance", "realized_today", "limit"),
    [
        pytest.param("51500", None, 2, id="at-the-first-tier-not-above"),
        pytest.param("51500.01", None, 3, id="just-above-the-first-tier"),
        pytest.param("52000", None, 3, id="at-the-second-tier"),
        pytest.param("52500", None, 5, id="above-the-second"),
        pytest.param("49000", None, 2, id="below-the-start"),
        pytest.param("51600", "500", 2, id="todays-profit-does-not-count"),
        pytest.param("51600", "-500", 3, id="todays-loss-counts"),
    ],
)
async def test_first_day_limit_from_the_balance(
    make_engine: EngineFactory, gateway: FakeGateway, balance, realized_today, limit
) -> None:
    engine = await make_engine(_scaling(), rule_classes=[MaxContracts])
    if realized_today is not None:
        await engine.process(TradeEvent(trade(ACC, pnl=realized_today)))
    await _balance(engine, balance)
    assert _rule(engine).limit(ACC) == limit
    await _hold(engine, gateway, limit + 1)
    assert [c.args for c in gateway.named("partial_close_contract")] == [(ACC, MNQ, 1)]


async def test_never_raised_during_the_day_then_judged_at_the_reset(
    make_engine: EngineFactory, gateway: FakeGateway, clock
) -> None:
    engine = await make_engine(_scaling(), rule_classes=[MaxContracts])
    await _balance(engine, "51600")
    assert _rule(engine).limit(ACC) == 3
    await _balance(engine, "53000")  # a good day: still 3 today
    await _hold(engine, gateway, 4)
    assert [c.args for c in gateway.named("partial_close_contract")] == [(ACC, MNQ, 1)]
    await clock.set(RESET)
    await settle(engine)
    assert _rule(engine).limit(ACC) == 5  # judged on the end-of-day balance
    await engine.close()
    again = await make_engine(_scaling(), rule_classes=[MaxContracts])
    await _balance(again, "50100")  # a bad morning does not lower it either
    assert _rule(again).limit(ACC) == 5
    await clock.set(RESET + timedelta(days=1))
    await settle(again)
    assert _rule(again).limit(ACC) == 2


async def test_the_starting_balance_defaults_to_rule_014s(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    rules = {
        "max_contracts": {"enabled": True, "limit": 2, "scaling": PLAN},
        "max_loss_limit": {"enabled": False, "starting_balance": 100000, "drawdown": 3000},
    }
    engine = await make_engine(rules, rule_classes=[MaxContracts])
    await _balance(engine, "101600")
    assert _rule(engine).limit(ACC) == 3
    assert "scaling plan: 3 today" in _rule(engine).status(ACC).detail


def test_scaling_tiers_are_validated() -> None:
    from pydantic import ValidationError

    from riskman.config import MaxContractsConfig as Config

    with pytest.raises(ValidationError, match="same balance_above"):
        Config(scaling=[{"balance_above": 1, "limit": 2}, {"balance_above": 1, "limit": 3}])
    with pytest.raises(ValidationError):
        Config(scaling=[{"balance_above": -1, "limit": 2}])
    tiers = Config(scaling=[{"balance_above": 9, "limit": 4}, {"balance_above": 1, "limit": 2}])
    assert [t.limit for t in tiers.scaling] == [2, 4]


# --- count_orders ---------------------------------------------------------------------------


def _entry(order_id: int, size: int, side: OrderSide = OrderSide.BID, contract: str = MNQ, **kw):
    return order(
        ACC, order_id, contract, side=side, order_type=OrderType.LIMIT, stop=None,
        limit="20000", size=size, **kw,
    )  # fmt: skip


async def _place(engine: Engine, gateway: FakeGateway, placed: Any) -> None:
    gateway.orders.setdefault(ACC, {})[placed.id] = placed
    await engine.process(OrderEvent(placed))
    await settle(engine)


def _cancelled(gateway: FakeGateway) -> list[int]:
    return [call.args[1] for call in gateway.named("cancel_order")]


@pytest.mark.parametrize(
    ("count", "held", "orders", "cancelled"),
    [
        pytest.param("net", 2, [(1, 1, "buy")], [], id="at-the-limit"),
        pytest.param("net", 2, [(1, 1, "buy"), (2, 1, "buy")], [2], id="one-over"),
        pytest.param("net", 2, [(1, 2, "sell")], [], id="a-stop-of-the-position-never-counts"),
        pytest.param("net", 2, [(1, 4, "sell")], [], id="a-flip-to-short-2"),
        pytest.param("net", 2, [(1, 6, "sell")], [1], id="a-flip-to-short-4"),
        pytest.param("gross", 2, [(1, 2, "buy")], [1], id="gross"),
        pytest.param("net", 0, [(1, 3, "buy"), (2, 3, "sell")], [], id="either-side-alone"),
    ],
)
async def test_account_order_scenarios(
    make_engine: EngineFactory, gateway: FakeGateway, count, held, orders, cancelled
) -> None:
    rules = {"max_contracts": {"enabled": True, "limit": 3, "count": count, "count_orders": True}}
    engine = await make_engine(rules, rule_classes=[MaxContracts])
    if held:
        await _hold(engine, gateway, held)
    for order_id, size, side in orders:
        sign = OrderSide.BID if side == "buy" else OrderSide.ASK
        await _place(engine, gateway, _entry(order_id, size, sign))
    assert _cancelled(gateway) == cancelled
    if cancelled:
        record = next(r for r in engine.recent_log() if r.rule == "RULE-001")
        assert "over 3 contracts if it filled" in record.reason


async def test_suspended_bracket_legs_and_orders_without_the_option_never_count(
    make_engine: EngineFactory, gateway: FakeGateway, tmp_path: Path
) -> None:
    rules = {"max_contracts": {"enabled": True, "limit": 2, "count_orders": True}}
    engine = await make_engine(rules, rule_classes=[MaxContracts])
    await _place(engine, gateway, _entry(1, 2))
    leg = order(ACC, 2, MNQ, side=OrderSide.ASK, size=2, status=OrderStatus.SUSPENDED)
    await _place(engine, gateway, leg)
    assert _cancelled(gateway) == []
    # Another riskman (its own folder: the first one's rules in force do not carry over).
    (tmp_path / "off").mkdir()
    off = await make_engine(
        {"max_contracts": {"enabled": True, "limit": 1}},
        rule_classes=[MaxContracts],
        database=tmp_path / "off" / "riskman.db",
    )
    await _place(off, gateway, _entry(3, 5))
    assert _cancelled(gateway) == []


async def test_orders_over_the_limit_at_start_are_cancelled_newest_first(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    rules = {"max_contracts": {"enabled": True, "limit": 3}}
    engine = await make_engine(rules, rule_classes=[MaxContracts])
    await _balance(engine, "50000")  # the account is known at the next start
    first = _entry(1, 2).model_copy(
        update={"creation_timestamp": datetime(2026, 11, 18, tzinfo=UTC)}
    )
    await _place(engine, gateway, first)
    await _place(engine, gateway, _entry(2, 2))
    await engine.close()
    rules["max_contracts"]["count_orders"] = True  # switched on while they were working
    again = await make_engine(rules, rule_classes=[MaxContracts])
    await settle(again)
    assert _cancelled(gateway) == [2]


async def test_symbol_limit_counts_that_symbols_orders_only(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    rules = {
        "max_contracts_per_instrument": {
            "enabled": True,
            "limits": {"MNQ": 2},
            "default_limit": 3,
            "count_orders": True,
        }
    }
    engine = await make_engine(rules, rule_classes=[MaxContractsPerInstrument])
    await _hold(engine, gateway, 1)
    await _place(engine, gateway, _entry(1, 2, contract=ES))  # ES: 2 of 3
    await _place(engine, gateway, _entry(2, 1))  # MNQ: 2 of 2
    await _place(engine, gateway, _entry(3, 1))  # MNQ: 3 of 2
    assert _cancelled(gateway) == [3]
    record = next(r for r in engine.recent_log() if r.rule == "RULE-002")
    assert "MNQ over 2 contracts if it filled" in record.reason

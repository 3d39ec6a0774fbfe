"""The shipped configuration, a loss the trader closes himself, and the gateway's fill order
(issue 11): riskman's real client and engine against the simulator, which sends each fill as
the gateway does (order, trade, position, account) or in another order.

Buy 1 ES and 1 MNQ; ES falls until it is half the daily loss limit down; the trader sells it.
Counted twice (realized, and still open until the position update), that loss alone reached the
limit and locked the account for the day. Counted once: no lock (RULE-007's cooldown only, and
the MNQ held before it is left alone). Then MNQ falls until the day's loss passes the limit:
flattened and locked by RULE-003.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from riskman.sim import Simulator
from riskman.sim.exchange import FILL_ORDER
from tests.e2e.conftest import (
    ES,
    MNQ,
    RuntimeFactory,
    buy,
    engine_of,
    eventually,
    held_by,
    quiet,
    seen,
    sell,
    sim_positions,
)

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "riskman.yaml"
ORDERS = [
    FILL_ORDER,
    ("position", "account", "trade", "order"),
    ("account", "trade", "order", "position"),
    ("trade", "account", "position", "order"),
]


def shipped_rules() -> dict[str, Any]:
    rules: dict[str, Any] = YAML(typ="safe", pure=True).load(SHIPPED.read_text())["rules"]
    # The test runs at any hour: the shipped trading session would lock it outside 08:30-15:10.
    rules["session_block_outside"]["enabled"] = False
    return rules


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
async def test_shipped_config_a_closed_loss_counts_once_then_the_limit_locks(
    sim: Simulator, make_runtime: RuntimeFactory, order: tuple[str, ...]
) -> None:
    rules = shipped_rules()
    limit = Decimal(str(rules["daily_realized_loss"]["limit"]))
    assert rules["daily_realized_loss"]["include_unrealized"] is True
    sim.set_fill_order(*order)
    account = sim.account_ids[0]
    runtime = await make_runtime(rules, accounts=[account])
    engine = engine_of(runtime)
    sim.set_price(ES, "6000")
    sim.set_price(MNQ, "24500")
    buy(sim, account, ES)  # at the ask: 6000.25
    buy(sim, account, MNQ)  # 24500.25
    await seen(runtime, account, ES, 1)
    await seen(runtime, account, MNQ, 1)

    # ES down half the limit ($50 a point), then the trader sells it himself at the bid.
    half = limit / 2
    es_mark = Decimal("6000.25") - half / 50
    sim.set_price(ES, str(es_mark))
    await eventually(lambda: engine.quotes.get_last_price(ES) == es_mark, what="the ES quote")
    sell(sim, account, ES)
    await seen(runtime, account, ES, 0)
    fees = Decimal("1.40") * 2 + Decimal("0.37")
    await eventually(
        lambda: engine.pnl.get_daily_realized_pnl(account) == -half - fees,
        what="the closed loss counted",
    )
    await eventually(
        lambda: engine.state.balance(account) == sim.balance(account), what="the balance"
    )
    await quiet(runtime)
    assert held_by(runtime, account, "RULE-003") is None, "a closed loss was counted twice"
    assert held_by(runtime, account, "RULE-007") is not None  # its cooldown, nothing more
    assert MNQ in sim_positions(sim, account)

    # MNQ ($2 a point) falls until today's loss passes the limit: flattened and locked.
    points = ((half + 5) / 2).quantize(Decimal("0.25"))
    sim.set_price(MNQ, str(Decimal("24500.25") - points))
    await eventually(
        lambda: held_by(runtime, account, "RULE-003") is not None, what="the RULE-003 lock"
    )
    await eventually(lambda: not sim_positions(sim, account), what="flat at the broker")
    lock = held_by(runtime, account, "RULE-003")
    assert lock is not None and f"reached the -${limit:,.2f} limit" in lock.reason

"""RULE-016..021 end to end: the trader trades at the simulated broker, riskman hears it on the
real SignalR hubs, and what riskman does is checked where it lands: in the requests the
simulator received and in the simulator's positions and orders.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from riskman.core.enums import OrderSide, OrderType
from riskman.core.locks import LockKind, Unlock
from riskman.core.rules import Rule
from riskman.rules.trailing_daily_loss import TrailingDailyLoss
from riskman.rules.weekly_limits import TRADES_LOCK, WeeklyLimits
from riskman.runtime import Runtime
from riskman.sim import Simulator
from tests.e2e.conftest import (
    ES,
    MES,
    MNQ,
    RTY,
    RuntimeFactory,
    bodies,
    buy,
    engine_of,
    eventually,
    gate_closes_new_position,
    held_by,
    logged,
    mark,
    quiet,
    seen,
    sell,
    sim_positions,
    stop_order,
    wait_close,
)

pytestmark = pytest.mark.e2e

CHICAGO = ZoneInfo("America/Chicago")


def limit_buy(sim: Simulator, account_id: int, contract_id: str, price: str, size: int = 1) -> int:
    """A resting entry order well below the market (it does not fill)."""
    return sim.submit_order(
        account_id, contract_id, OrderSide.BID, size, OrderType.LIMIT, limit_price=price
    )


def working_ids(sim: Simulator, account_id: int) -> set[int]:
    return {order.id for order in sim.open_orders(account_id)}


def rule_of(runtime: Runtime, rule_id: str) -> Rule:
    return next(rule for rule in engine_of(runtime).rules if rule.id == rule_id)


async def wait_cancel(sim: Simulator, account_id: int, order_id: int, since: float) -> None:
    request = await sim.wait_for_request(
        "Order/cancel",
        lambda r: r.body == {"accountId": account_id, "orderId": order_id},
        timeout=10,
        since=since,
    )
    assert request.response is not None and request.response["success"] is True
    await eventually(lambda: order_id not in working_ids(sim, account_id))


# --- RULE-016 trailing_daily_loss ------------------------------------------------------------


async def test_trailing_daily_loss_floor_rises_with_the_balance_then_flattens_and_locks(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"trailing_daily_loss": {"limit": 100, "trail": "realized"}})
    account = sim.account_ids[0]
    sim.set_balance(account, "50000")
    rule = rule_of(runtime, "RULE-016")
    assert isinstance(rule, TrailingDailyLoss)
    await eventually(lambda: rule.high(account) == Decimal(50000), what="the day's first high")
    sim.set_price(ES, "6650")
    buy(sim, account, ES, 1)  # 6650.25
    sim.set_price(ES, "6660")
    sell(sim, account, ES, 1)  # +$487.50 less fees: the day's high rises to ~$50,485
    await seen(runtime, account, ES, 0)
    await quiet(runtime)
    assert held_by(runtime, account, "RULE-016") is None
    entry = limit_buy(sim, account, MES, "6600")
    buy(sim, account, ES, 1)  # 6660.25
    await seen(runtime, account, ES, 1)
    since = mark()
    sim.set_price(ES, "6652")  # -$103 open: below the risen floor, well above the start
    await wait_close(sim, account, ES, since)
    await wait_cancel(sim, account, entry, since)
    lock = held_by(runtime, account, "RULE-016")
    assert lock is not None and lock.unlock is Unlock.RESET
    record = await logged(runtime, "RULE-016", "flatten", target="account")
    assert "trailing daily loss floor" in record.reason
    await gate_closes_new_position(sim, runtime, account, MNQ)
    assert bodies(sim, "Position/partialCloseContract", since) == []
    assert sim_positions(sim, account) == {}
    assert Decimal(sim.balance(account)) > Decimal(50000)  # locked while still up on the day


# --- RULE-017 weekly_limits ------------------------------------------------------------------


async def test_weekly_loss_flattens_cancels_and_locks_until_the_weeks_first_reset(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"weekly_limits": {"loss": 50}})
    account = sim.account_ids[0]
    sim.set_price(ES, "6650")
    sim.set_price(MES, "6650")
    buy(sim, account, MNQ, 1)
    entry = limit_buy(sim, account, MES, "6600")
    await seen(runtime, account, MNQ, 1)
    since = mark()
    buy(sim, account, ES, 1)  # 6650.25
    sim.set_price(ES, "6648")
    sell(sim, account, ES, 1)  # -$112.50 and fees
    await wait_close(sim, account, MNQ, since)
    await wait_cancel(sim, account, entry, since)
    lock = held_by(runtime, account, "RULE-017")
    assert lock is not None and lock.unlock is Unlock.RESET and lock.until is not None
    rule = rule_of(runtime, "RULE-017")
    assert isinstance(rule, WeeklyLimits)
    assert lock.until == rule.week_end()
    assert lock.until.astimezone(CHICAGO).weekday() == 6  # Sunday's reset
    record = await logged(runtime, "RULE-017", "flatten", target="account")
    assert "weekly P&L" in record.reason
    await gate_closes_new_position(sim, runtime, account, MNQ)


async def test_weekly_trade_count_starts_a_cooldown_that_keeps_open_positions(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"weekly_limits": {"trades": 2}})
    account = sim.account_ids[0]
    sim.set_price(MES, "6650")
    buy(sim, account, ES, 1)
    buy(sim, account, MNQ, 1)
    await seen(runtime, account, MNQ, 1)
    entry = limit_buy(sim, account, MES, "6600")
    since = mark()
    buy(sim, account, RTY, 1)  # the third trade of the week
    await wait_cancel(sim, account, entry, since)
    lock = held_by(runtime, account, TRADES_LOCK)
    assert lock is not None and lock.kind is LockKind.COOLDOWN
    await wait_close(sim, account, RTY, since)  # opened in the cooldown: the gate closes it
    await quiet(runtime)
    assert {c: p.size for c, p in sim_positions(sim, account).items()} == {ES: 1, MNQ: 1}
    assert held_by(runtime, account, "RULE-017") is None


# --- RULE-018 no_averaging_down --------------------------------------------------------------


async def test_an_addition_below_the_average_entry_is_cut_back(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"no_averaging_down": {}})
    account = sim.account_ids[0]
    sim.set_price(MNQ, "24500")
    buy(sim, account, MNQ, 2)
    await seen(runtime, account, MNQ, 2)
    sim.set_price(MNQ, "24510")
    buy(sim, account, MNQ, 1)  # above the average: allowed
    await seen(runtime, account, MNQ, 3)
    await quiet(runtime)
    assert bodies(sim, "Position/partialCloseContract") == []
    since = mark()
    sim.set_price(MNQ, "24490")
    buy(sim, account, MNQ, 2)  # below the average: averaging down
    request = await sim.wait_for_request("Position/partialCloseContract", timeout=10, since=since)
    assert request.body == {"accountId": account, "contractId": MNQ, "size": 2}
    await eventually(lambda: sim_positions(sim, account)[MNQ].size == 3)
    await logged(runtime, "RULE-018", "reduce", target=MNQ)
    await quiet(runtime)
    assert len(bodies(sim, "Position/partialCloseContract", since)) == 1
    assert bodies(sim, "Position/closeContract", since) == []


# --- RULE-019 no_flip ------------------------------------------------------------------------


async def test_one_fill_that_flips_a_long_into_a_short_is_cut_back_to_flat(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"no_flip": {}})
    account = sim.account_ids[0]
    buy(sim, account, ES, 2)
    await seen(runtime, account, ES, 2)
    since = mark()
    sell(sim, account, ES, 3)  # long 2 -> short 1 in one fill
    await wait_close(sim, account, ES, since)
    await logged(runtime, "RULE-019", "close", target=ES)
    # Opening the other side afterwards, with a new order, is allowed.
    sell(sim, account, ES, 1)
    await seen(runtime, account, ES, 1)
    await quiet(runtime)
    assert sim_positions(sim, account)[ES].size == 1
    assert len(bodies(sim, "Position/closeContract", since)) == 1
    assert held_by(runtime, account, "RULE-019") is None


# --- RULE-021 blackouts ----------------------------------------------------------------------


def window_from_now(start_in: float, length: float, reason: str) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "start": (now + timedelta(seconds=start_in)).isoformat(timespec="seconds"),
        "end": (now + timedelta(seconds=start_in + length)).isoformat(timespec="seconds"),
        "reason": reason,
    }


async def test_a_blackout_window_cancels_entries_and_gates_new_exposure_on_time(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"blackouts": {"windows": [window_from_now(3, 120, "FOMC")]}})
    account = sim.account_ids[0]
    sim.set_price(MES, "6650")
    buy(sim, account, ES, 1)  # open before the window: kept
    stop = stop_order(sim, account, ES, OrderSide.ASK, Decimal("6000"))
    entry = limit_buy(sim, account, MES, "6600")
    await seen(runtime, account, ES, 1)
    since = mark()
    await wait_cancel(sim, account, entry, since)  # the window starts: no timer-less wait
    lock = held_by(runtime, account, "RULE-021")
    assert lock is not None and lock.kind is LockKind.COOLDOWN and "FOMC" in lock.reason
    await gate_closes_new_position(sim, runtime, account, MNQ)
    await quiet(runtime)
    assert sim_positions(sim, account)[ES].size == 1
    assert stop in working_ids(sim, account)


async def test_flatten_before_a_blackout_window(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime(
        {"blackouts": {"windows": [window_from_now(62, 60, "CPI")], "flatten_before": "1m"}}
    )
    account = sim.account_ids[0]
    buy(sim, account, ES, 1)
    await seen(runtime, account, ES, 1)
    since = mark()
    await wait_close(sim, account, ES, since)
    await logged(runtime, "RULE-021", "flatten", target="account")
    assert held_by(runtime, account, "RULE-021") is not None


# --- RULE-020 stop_discipline ----------------------------------------------------------------


def stop_price_of(sim: Simulator, account_id: int, order_id: int) -> Decimal | None:
    found = [o for o in sim.open_orders(account_id) if o.id == order_id]
    return found[0].stop_price if found else None


async def test_a_widened_stop_is_put_back_and_a_far_one_pulled_in(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"stop_discipline": {"max_ticks": 40}})
    account = sim.account_ids[0]
    sim.set_price(ES, "6650")
    buy(sim, account, ES, 1)  # 6650.25
    await seen(runtime, account, ES, 1)
    stop = stop_order(sim, account, ES, OrderSide.ASK, Decimal("6645"))
    await eventually(lambda: engine_of(runtime).state.get_order(account, stop) is not None)
    since = mark()
    sim.modify_order(account, stop, stop_price="6642")  # widened
    request = await sim.wait_for_request("Order/modify", timeout=10, since=since)
    assert request.body["orderId"] == stop and Decimal(str(request.body["stopPrice"])) == 6645
    await eventually(lambda: stop_price_of(sim, account, stop) == Decimal("6645"))
    await logged(runtime, "RULE-020", "move stop")
    # A new stop 60 ticks away is pulled in to 40 ticks from the entry (6640.25).
    far = stop_order(sim, account, ES, OrderSide.ASK, Decimal("6635.25"))
    await eventually(lambda: stop_price_of(sim, account, far) == Decimal("6640.25"))


async def test_a_cancelled_stop_closes_its_position_when_rule_008_is_off(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"stop_discipline": {"cancel_grace": 1}})
    account = sim.account_ids[0]
    buy(sim, account, ES, 1)
    await seen(runtime, account, ES, 1)
    stop = stop_order(sim, account, ES, OrderSide.ASK, Decimal("6000"))
    await eventually(lambda: engine_of(runtime).state.get_order(account, stop) is not None)
    since = mark()
    sim.cancel_order(account, stop)
    await wait_close(sim, account, ES, since)
    await logged(runtime, "RULE-020", "close", target=ES)


# --- RULE-001/002 options: scaling plan, working orders count -------------------------------


async def test_scaling_plan_sets_the_days_contract_limit_from_the_balance(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    account = sim.account_ids[0]
    sim.set_balance(account, "51600")  # $1,600 over the start: the 3-contract tier
    runtime = await make_runtime(
        {
            "max_contracts": {
                "limit": 2,
                "starting_balance": 50000,
                "scaling": [
                    {"balance_above": 1500, "limit": 3},
                    {"balance_above": 2000, "limit": 5},
                ],
            }
        }
    )
    since = mark()
    buy(sim, account, MNQ, 4)
    request = await sim.wait_for_request("Position/partialCloseContract", timeout=10, since=since)
    assert request.body == {"accountId": account, "contractId": MNQ, "size": 1}
    record = await logged(runtime, "RULE-001", "reduce", target=MNQ)
    assert "limit 3" in record.reason


async def test_an_entry_order_that_would_exceed_the_limit_is_cancelled_before_it_fills(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime(
        {
            "max_contracts": {"limit": 3, "count_orders": True},
            "max_contracts_per_instrument": {"limits": {"MES": 1}, "count_orders": True},
        }
    )
    account = sim.account_ids[0]
    sim.set_price(MES, "6650")
    buy(sim, account, MNQ, 2)
    await seen(runtime, account, MNQ, 2)
    stop = stop_order(sim, account, MNQ, OrderSide.ASK, Decimal("20000"), size=2)  # protective
    fits = limit_buy(sim, account, MES, "6600")  # 3 of 3, MES 1 of 1
    await eventually(lambda: engine_of(runtime).state.get_order(account, fits) is not None)
    since = mark()
    over = limit_buy(sim, account, MES, "6600")  # 4 of 3, MES 2 of 1
    await wait_cancel(sim, account, over, since)
    await quiet(runtime)
    assert {stop, fits} <= working_ids(sim, account)
    assert {"RULE-001", "RULE-002"} & {
        r.rule for r in engine_of(runtime).recent_log() if r.action == "cancel"
    }


# --- count_trades_as: fills (RULE-006) ----------------------------------------------------------


async def test_counting_fills_makes_a_round_turn_two_trades(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime(
        {
            "trade_frequency_limit": {
                "per_minute": 2,
                "per_hour": None,
                "per_session": None,
                "count_trades_as": "fills",
            }
        }
    )
    account = sim.account_ids[0]
    buy(sim, account, MNQ, 1)
    sell(sim, account, MNQ, 1)  # a round turn: two fills, at the limit
    await seen(runtime, account, MNQ, 0)
    await quiet(runtime)
    assert held_by(runtime, account, "RULE-006") is None
    since = mark()
    buy(sim, account, ES, 1)  # the third fill within a minute
    await eventually(lambda: held_by(runtime, account, "RULE-006") is not None)
    record = await logged(runtime, "RULE-006", "cooldown", target="account", result="cooldown")
    assert "3 fills within a minute" in record.reason
    await wait_close(sim, account, ES, since)  # opened in the cooldown

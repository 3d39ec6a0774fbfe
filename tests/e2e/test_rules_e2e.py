"""Every rule end to end: the trader trades at the simulated broker, riskman hears it on the
real SignalR hubs, and what riskman does is checked where it lands: in the requests the
simulator received (close, partial close, cancel, modify, place) and in the simulator's
positions and orders. Locking rules are also checked through the lockout gate: a position the
trader opens after the lock is closed at once.

Time-based rules run on the real clock with short configured durations, or on a clock shifted
a few seconds before a session boundary (`ShiftedClock`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from riskman.core.enums import OrderSide, OrderType
from riskman.core.locks import LockKind, Unlock
from riskman.runtime import Runtime
from riskman.sim import SimRejected, Simulator
from tests.e2e.conftest import (
    ES,
    MES,
    MNQ,
    RTY,
    RuntimeFactory,
    ShiftedClock,
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

M2K = "CON.F.US.M2K.Z26"
CHICAGO = ZoneInfo("America/Chicago")
EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


# --- helpers --------------------------------------------------------------------------------


def limit_buy(sim: Simulator, account_id: int, contract_id: str, price: str, size: int = 1) -> int:
    """A resting entry order well below the market (it does not fill)."""
    return sim.submit_order(
        account_id, contract_id, OrderSide.BID, size, OrderType.LIMIT, limit_price=price
    )


def working_ids(sim: Simulator, account_id: int) -> set[int]:
    return {order.id for order in sim.open_orders(account_id)}


async def wait_cancel(sim: Simulator, account_id: int, order_id: int, since: float) -> None:
    """The simulator received a cancel of exactly this order and the order is gone."""
    request = await sim.wait_for_request(
        "Order/cancel",
        lambda r: r.body == {"accountId": account_id, "orderId": order_id},
        timeout=10,
        since=since,
    )
    assert request.response is not None and request.response["success"] is True
    await eventually(lambda: order_id not in working_ids(sim, account_id))


async def stays_open(
    sim: Simulator, runtime: Runtime, account_id: int, contract_id: str, size: int = 1
) -> None:
    """Open a position and check riskman leaves it alone (no lock holds any more)."""
    since = mark()
    buy(sim, account_id, contract_id, size)
    await seen(runtime, account_id, contract_id, size)
    await quiet(runtime)
    assert bodies(sim, "Position/closeContract", since) == []
    assert bodies(sim, "Position/partialCloseContract", since) == []
    assert sim_positions(sim, account_id)[contract_id].size == size


def session_hours(first: datetime, last: datetime) -> dict[str, str]:
    """`start`/`end` of a session from `first` to `last`, as HH:MM in Chicago."""
    return {
        "start": first.astimezone(CHICAGO).strftime("%H:%M"),
        "end": last.astimezone(CHICAGO).strftime("%H:%M"),
    }


def session(first: datetime, last: datetime, **more: Any) -> dict[str, Any]:
    """A RULE-009 configuration every day of the week (the test may run on a weekend) that
    ignores the holiday calendar (it may run on a holiday)."""
    return {
        "session_block_outside": {
            **session_hours(first, last),
            "days": EVERY_DAY,
            "respect_holidays": False,
            **more,
        }
    }


# --- RULE-001 max_contracts -----------------------------------------------------------------


async def test_max_contracts_reduces_the_newest_position_to_the_limit(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"max_contracts": {"limit": 3}})
    account = sim.account_ids[0]
    buy(sim, account, MES, 2)
    await seen(runtime, account, MES, 2)
    since = mark()
    buy(sim, account, MNQ, 2)
    request = await sim.wait_for_request("Position/partialCloseContract", timeout=10, since=since)
    # 4 contracts against a limit of 3: the newest position (MNQ) gives up one.
    assert request.body == {"accountId": account, "contractId": MNQ, "size": 1}
    await eventually(lambda: sim_positions(sim, account)[MNQ].size == 1)
    assert sim_positions(sim, account)[MES].size == 2
    await logged(runtime, "RULE-001", "reduce", target=MNQ)
    await quiet(runtime)
    assert len(bodies(sim, "Position/partialCloseContract", since)) == 1
    assert held_by(runtime, account, "RULE-001") is None


async def test_max_contracts_close_all_flattens_every_position(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"max_contracts": {"limit": 2, "action": "close_all"}})
    account = sim.account_ids[0]
    buy(sim, account, MES, 2)
    await seen(runtime, account, MES, 2)
    since = mark()
    buy(sim, account, MNQ, 1)
    await wait_close(sim, account, MES, since)
    await wait_close(sim, account, MNQ, since)
    assert sim_positions(sim, account) == {}
    await logged(runtime, "RULE-001", "flatten", target="account")
    assert bodies(sim, "Position/partialCloseContract", since) == []


# --- RULE-002 max_contracts_per_instrument ---------------------------------------------------


async def test_per_instrument_limit_reduces_only_that_symbol(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime(
        {"max_contracts_per_instrument": {"limits": {"MNQ": 2}, "default_limit": 3}}
    )
    account = sim.account_ids[0]
    buy(sim, account, MES, 3)  # at its default limit: allowed
    await seen(runtime, account, MES, 3)
    since = mark()
    buy(sim, account, MNQ, 3)
    request = await sim.wait_for_request("Position/partialCloseContract", timeout=10, since=since)
    assert request.body == {"accountId": account, "contractId": MNQ, "size": 1}
    await eventually(lambda: sim_positions(sim, account)[MNQ].size == 2)
    assert sim_positions(sim, account)[MES].size == 3
    await logged(runtime, "RULE-002", "reduce", target=MNQ)
    await quiet(runtime)
    assert [b["contractId"] for b in bodies(sim, "Position/partialCloseContract")] == [MNQ]


async def test_per_instrument_limit_given_by_exchange_ticker_applies_to_gateway_root(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    # `ES` in the config is the gateway's `EP`, with action close: the whole position goes.
    runtime = await make_runtime(
        {"max_contracts_per_instrument": {"limits": {"ES": 1}, "action": "close"}}
    )
    account = sim.account_ids[0]
    since = mark()
    buy(sim, account, ES, 2)
    await wait_close(sim, account, ES, since)
    await logged(runtime, "RULE-002", "close", target=ES)
    assert bodies(sim, "Position/partialCloseContract", since) == []


async def test_per_instrument_unknown_symbol_block_closes_unlisted_symbols(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime(
        {"max_contracts_per_instrument": {"limits": {"MNQ": 2}, "unknown_symbol": "block"}}
    )
    account = sim.account_ids[0]
    buy(sim, account, MNQ, 1)  # listed: allowed
    await seen(runtime, account, MNQ, 1)
    since = mark()
    buy(sim, account, ES, 1)
    await wait_close(sim, account, ES, since)
    record = await logged(runtime, "RULE-002", "close", target=ES)
    assert "not an allowed symbol" in record.reason
    await quiet(runtime)
    assert sim_positions(sim, account)[MNQ].size == 1


# --- RULE-003 daily_realized_loss ------------------------------------------------------------


async def test_daily_realized_loss_flattens_cancels_locks_and_gates_new_positions(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime(
        {"daily_realized_loss": {"limit": 100, "include_unrealized": False}}
    )
    account = sim.account_ids[0]
    sim.set_price(ES, "6650")
    sim.set_price(MES, "6650")
    buy(sim, account, MNQ, 1)  # held while the loss happens: flattened with the rest
    entry = limit_buy(sim, account, MES, "6600")
    await seen(runtime, account, MNQ, 1)
    since = mark()
    buy(sim, account, ES, 1)  # 6650.25 (the ask)
    sim.set_price(ES, "6648")
    sell(sim, account, ES, 1)  # 6648: -$112.50 realized, plus fees
    await wait_close(sim, account, MNQ, since)
    await wait_cancel(sim, account, entry, since)
    lock = held_by(runtime, account, "RULE-003")
    assert lock is not None and lock.kind is LockKind.LOCKOUT and lock.unlock is Unlock.RESET
    assert lock.until is not None and lock.until == engine_of(runtime).resets.next_reset(
        engine_of(runtime).clock.now()
    )
    await logged(runtime, "RULE-003", "flatten", target="account")
    await gate_closes_new_position(sim, runtime, account, MES)
    # An order placed while locked is cancelled too.
    since = mark()
    late = limit_buy(sim, account, MES, "6600")
    await wait_cancel(sim, account, late, since)
    assert sim_positions(sim, account) == {}


async def test_daily_loss_counting_open_pnl_closes_the_losing_position_and_locks(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"daily_realized_loss": {"limit": 100}})  # + open P&L
    account = sim.account_ids[0]
    sim.set_price(ES, "6650")
    buy(sim, account, ES, 1)  # 6650.25
    await seen(runtime, account, ES, 1)
    since = mark()
    sim.set_price(ES, "6648.25")  # marked at the bid: -$100.00 open, exactly the limit
    await wait_close(sim, account, ES, since)
    record = await logged(runtime, "RULE-003", "flatten", target="account")
    assert "-$100.00" in record.reason
    assert held_by(runtime, account, "RULE-003") is not None
    await gate_closes_new_position(sim, runtime, account, MNQ)


async def test_daily_loss_one_tick_short_of_the_limit_does_nothing(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"daily_realized_loss": {"limit": 100}})
    account = sim.account_ids[0]
    sim.set_price(ES, "6650")
    buy(sim, account, ES, 1)
    await seen(runtime, account, ES, 1)
    since = mark()
    sim.set_price(ES, "6648.50")  # -$87.50 open
    await eventually(
        lambda: engine_of(runtime).pnl.calculate_unrealized_pnl(account).total == Decimal("-87.50")
    )
    await quiet(runtime)
    assert bodies(sim, "Position/closeContract", since) == []
    assert held_by(runtime, account, "RULE-003") is None


# --- RULE-004 daily_unrealized_loss ----------------------------------------------------------


async def test_position_loss_limit_closes_only_the_losing_position_without_lock(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"daily_unrealized_loss": {"limit": 100}})
    account = sim.account_ids[0]
    sim.set_price(ES, "6650")
    buy(sim, account, MNQ, 1)
    buy(sim, account, ES, 1)  # 6650.25
    await seen(runtime, account, ES, 1)
    await seen(runtime, account, MNQ, 1)
    since = mark()
    sim.set_price(ES, "6648")  # -$112.50 open on ES
    await wait_close(sim, account, ES, since)
    await logged(runtime, "RULE-004", "close", target=ES)
    await quiet(runtime)
    assert [b["contractId"] for b in bodies(sim, "Position/closeContract", since)] == [ES]
    assert sim_positions(sim, account)[MNQ].size == 1
    assert held_by(runtime, account, "RULE-004") is None


async def test_a_position_reopened_after_a_close_is_marked_at_the_live_price(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    # Regression: once flat, riskman drops the contract's quote subscription, and the last
    # quote it kept (the losing one) still looked fresh. A re-entry seconds later was marked
    # at that old price and closed for a loss it did not have.
    runtime = await make_runtime({"daily_unrealized_loss": {"limit": 100}})
    account = sim.account_ids[0]
    sim.set_price(ES, "6650")
    buy(sim, account, ES, 1)
    await seen(runtime, account, ES, 1)
    since = mark()
    sim.set_price(ES, "6648")
    await wait_close(sim, account, ES, since)
    await eventually(
        lambda: ("SubscribeContractQuotes", ES) not in sim.subscriptions("market"),
        what="riskman to drop the ES quotes",
    )
    sim.set_price(ES, "6650")  # the market recovers while the trader is flat
    await stays_open(sim, runtime, account, ES)  # -$12.50 at the live price


# --- RULE-005 max_unrealized_profit ----------------------------------------------------------


async def test_take_profit_closes_the_winning_position(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"max_unrealized_profit": {"target": 100}})
    account = sim.account_ids[0]
    sim.set_price(ES, "6650")
    buy(sim, account, MNQ, 1)
    buy(sim, account, ES, 1)  # 6650.25
    await seen(runtime, account, ES, 1)
    await seen(runtime, account, MNQ, 1)
    since = mark()
    sim.set_price(ES, "6652.25")  # +$100.00 at the bid: the target
    await wait_close(sim, account, ES, since)
    record = await logged(runtime, "RULE-005", "close", target=ES)
    assert "take profit" in record.reason
    await quiet(runtime)
    assert sim_positions(sim, account)[MNQ].size == 1
    assert held_by(runtime, account, "RULE-005") is None


# --- RULE-006 trade_frequency_limit ----------------------------------------------------------


async def test_trade_frequency_cooldown_cancels_entries_keeps_stops_and_gates_new_exposure(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime(
        {
            "trade_frequency_limit": {
                "per_minute": 2,
                "per_hour": None,
                "per_session": None,
                "cooldowns": {"per_minute": 60},
            }
        }
    )
    account = sim.account_ids[0]
    sim.set_price(ES, "6650")
    sim.set_price(MES, "6650")
    buy(sim, account, ES, 1)  # trade 1
    stop = stop_order(sim, account, ES, OrderSide.ASK, Decimal("6640"))  # protective
    entry = limit_buy(sim, account, MES, "6600")  # an entry waiting to fill
    buy(sim, account, MNQ, 1)  # trade 2
    await seen(runtime, account, MNQ, 1)
    since = mark()
    buy(sim, account, RTY, 1)  # trade 3 within a minute: one too many
    await wait_cancel(sim, account, entry, since)
    lock = held_by(runtime, account, "RULE-006")
    assert lock is not None and lock.kind is LockKind.COOLDOWN and lock.until is not None
    assert 55 <= (lock.until - engine_of(runtime).clock.now()).total_seconds() <= 61
    await logged(runtime, "RULE-006", "cooldown", target="account", result="cooldown")
    # The fill that broke the limit opened a position in a cooldown: the gate closes it.
    await wait_close(sim, account, RTY, since)
    await logged(runtime, "LOCKOUT", "close", target=RTY)
    await gate_closes_new_position(sim, runtime, account, MES)
    await quiet(runtime)
    # The open positions and their protective stop are left alone.
    assert {c: p.size for c, p in sim_positions(sim, account).items()} == {ES: 1, MNQ: 1}
    assert stop in working_ids(sim, account)
    assert {"accountId": account, "orderId": stop} not in bodies(sim, "Order/cancel")


async def test_trade_frequency_cooldown_ends_after_its_duration(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime(
        {
            "trade_frequency_limit": {
                "per_minute": 1,
                "per_hour": None,
                "per_session": None,
                "cooldowns": {"per_minute": 1},
            }
        }
    )
    account = sim.account_ids[0]
    buy(sim, account, MNQ, 1)
    buy(sim, account, MNQ, 1)  # two trades in a minute: a one-second cooldown
    await eventually(lambda: held_by(runtime, account, "RULE-006") is not None)
    await eventually(lambda: held_by(runtime, account, "RULE-006") is None, timeout=10)
    assert engine_of(runtime).lockouts.blocking(account, "MNQ") is None


# --- RULE-007 cooldown_after_loss ------------------------------------------------------------


async def test_loss_cooldown_cancels_entries_keeps_positions_and_gates_new_ones(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime(
        {
            "cooldown_after_loss": {
                "tiers": [{"loss": 50, "cooldown": 60}, {"loss": 500, "cooldown": 900}]
            }
        }
    )
    account = sim.account_ids[0]
    sim.set_price(ES, "6650")
    sim.set_price(MES, "6650")
    sim.set_price(MNQ, "24500")
    # A position with its bracket stop, held through the cooldown.
    sim.submit_order(account, ES, OrderSide.BID, 1, stop_loss_ticks=40)
    entry = limit_buy(sim, account, MES, "6600")
    buy(sim, account, MNQ, 10)  # 24500.25
    await seen(runtime, account, MNQ, 10)
    since = mark()
    sim.set_price(MNQ, "24497")
    sell(sim, account, MNQ, 10)  # -$65.00 and fees: the $50 tier, not the $500 one
    await wait_cancel(sim, account, entry, since)
    lock = held_by(runtime, account, "RULE-007")
    assert lock is not None and lock.kind is LockKind.COOLDOWN and lock.until is not None
    assert 55 <= (lock.until - engine_of(runtime).clock.now()).total_seconds() <= 61
    record = await logged(runtime, "RULE-007", "cooldown", target="account", result="cooldown")
    assert "tier $50.00" in record.reason
    await gate_closes_new_position(sim, runtime, account, MES)
    # During the cooldown a new entry order is cancelled; a new protective stop is not.
    since = mark()
    late_entry = limit_buy(sim, account, MES, "6600")
    await wait_cancel(sim, account, late_entry, since)
    late_stop = stop_order(sim, account, ES, OrderSide.ASK, Decimal("6630"))
    await eventually(lambda: engine_of(runtime).state.get_order(account, late_stop) is not None)
    await quiet(runtime)
    assert late_stop in working_ids(sim, account)
    assert {c: p.size for c, p in sim_positions(sim, account).items()} == {ES: 1}
    stops = [o for o in sim.open_orders(account) if o.contract_id == ES]
    assert len(stops) == 2 and all(o.type is OrderType.STOP for o in stops)
    assert all(b["orderId"] not in {o.id for o in stops} for b in bodies(sim, "Order/cancel"))


async def test_adding_to_an_open_position_during_a_cooldown_is_cut_back(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    # A cooldown leaves what is open alone and stops new exposure: an addition is cut back
    # (a partial close of exactly the added contracts), the rest of the position stays.
    runtime = await make_runtime({"cooldown_after_loss": {"tiers": [{"loss": 50, "cooldown": 60}]}})
    account = sim.account_ids[0]
    sim.set_price(MNQ, "24500")
    buy(sim, account, ES, 2)
    buy(sim, account, MNQ, 10)
    sim.set_price(MNQ, "24497")
    sell(sim, account, MNQ, 10)
    await eventually(lambda: held_by(runtime, account, "RULE-007") is not None)
    await seen(runtime, account, ES, 2)
    since = mark()
    buy(sim, account, ES, 1)
    request = await sim.wait_for_request(
        "Position/partialCloseContract", lambda r: r.received >= since, timeout=10
    )
    assert request.body == {"accountId": account, "contractId": ES, "size": 1}
    await eventually(lambda: sim_positions(sim, account)[ES].size == 2)
    record = await logged(runtime, "LOCKOUT", "reduce", target=ES)
    assert record.reason.startswith("position grew during a cooldown (RULE-007")
    assert bodies(sim, "Position/closeContract", since) == []


async def test_a_cooldown_survives_a_restart_with_its_end(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    rules = {"cooldown_after_loss": {"tiers": [{"loss": 50, "cooldown": 60}]}}
    runtime = await make_runtime(rules)
    account = sim.account_ids[0]
    sim.set_price(MNQ, "24500")
    buy(sim, account, MNQ, 10)
    sim.set_price(MNQ, "24497")
    sell(sim, account, MNQ, 10)
    await eventually(lambda: held_by(runtime, account, "RULE-007") is not None)
    before = held_by(runtime, account, "RULE-007")
    assert before is not None
    await runtime.stop()
    restarted = await make_runtime(rules)  # the same database
    after = held_by(restarted, account, "RULE-007")
    assert after is not None and after.until == before.until
    await gate_closes_new_position(sim, restarted, account, MES)


async def test_loss_cooldown_ends_and_trading_resumes(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"cooldown_after_loss": {"tiers": [{"loss": 50, "cooldown": 1}]}})
    account = sim.account_ids[0]
    sim.set_price(MNQ, "24500")
    buy(sim, account, MNQ, 10)
    sim.set_price(MNQ, "24497")
    sell(sim, account, MNQ, 10)
    await eventually(lambda: held_by(runtime, account, "RULE-007") is not None)
    await eventually(lambda: held_by(runtime, account, "RULE-007") is None, timeout=10)
    await stays_open(sim, runtime, account, MNQ)


async def test_a_loss_below_the_first_tier_starts_no_cooldown(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"cooldown_after_loss": {"tiers": [{"loss": 50, "cooldown": 60}]}})
    account = sim.account_ids[0]
    sim.set_price(MNQ, "24500")
    buy(sim, account, MNQ, 1)
    sim.set_price(MNQ, "24497")
    sell(sim, account, MNQ, 1)  # -$6.50
    await seen(runtime, account, MNQ, 0)
    await quiet(runtime)
    assert held_by(runtime, account, "RULE-007") is None
    await stays_open(sim, runtime, account, MNQ)


# --- RULE-008 no_stop_loss_grace -------------------------------------------------------------


async def test_position_without_stop_is_closed_after_grace_one_with_a_stop_is_kept(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"no_stop_loss_grace": {"grace_seconds": 1}})
    account = sim.account_ids[0]
    sim.set_price(MNQ, "24500")
    # Protected by a bracket stop (suspended until the entry fills, then working).
    sim.submit_order(account, MNQ, OrderSide.BID, 1, stop_loss_ticks=40)
    await seen(runtime, account, MNQ, 1)
    since = mark()
    buy(sim, account, ES, 1)  # naked
    await seen(runtime, account, ES, 1)
    opened = engine_of(runtime).clock.now()
    await wait_close(sim, account, ES, since)
    # Not before the grace ran out (the position opened at the broker just before `opened`).
    assert engine_of(runtime).clock.now() - opened >= timedelta(seconds=0.8)
    record = await logged(runtime, "RULE-008", "close", target=ES)
    assert "no stop loss" in record.reason
    await quiet(runtime)
    # MNQ opened first: its grace is over too, and its stop kept it open.
    assert sim_positions(sim, account)[MNQ].size == 1
    assert [b["contractId"] for b in bodies(sim, "Position/closeContract")] == [ES]


async def test_a_stop_placed_within_the_grace_keeps_the_position(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"no_stop_loss_grace": {"grace_seconds": 1}})
    account = sim.account_ids[0]
    sim.set_price(MNQ, "24500")
    sim.set_price(ES, "6650")
    buy(sim, account, MNQ, 1)
    stop_order(sim, account, MNQ, OrderSide.ASK, Decimal("24490"))
    since = mark()
    buy(sim, account, ES, 1)  # naked: the clock for the comparison
    await wait_close(sim, account, ES, since)
    await quiet(runtime)
    assert sim_positions(sim, account)[MNQ].size == 1
    assert [b["contractId"] for b in bodies(sim, "Position/closeContract")] == [ES]


# --- RULE-009 session_block_outside ----------------------------------------------------------


async def test_outside_the_session_riskman_flattens_at_start_and_locks_until_it_opens(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    now = datetime.now(CHICAGO)
    # The session starts in two hours: now is outside it.
    rules = session(now + timedelta(hours=2), now + timedelta(hours=3))
    account = sim.account_ids[0]
    buy(sim, account, MNQ, 1)  # held before riskman starts
    entry = limit_buy(sim, account, MES, "6000")
    since = mark()
    runtime = await make_runtime(rules)
    await wait_close(sim, account, MNQ, since)
    await wait_cancel(sim, account, entry, since)
    lock = held_by(runtime, account, "RULE-009")
    assert lock is not None and lock.unlock is Unlock.SESSION and lock.until is not None
    expected = (now + timedelta(hours=2)).replace(second=0, microsecond=0)
    assert lock.until == expected
    await logged(runtime, "RULE-009", "flatten", target="account")
    await gate_closes_new_position(sim, runtime, account, ES)


async def test_opening_a_position_outside_the_session_without_flatten_at_end_locks(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    now = datetime.now(CHICAGO)
    rules = session(now + timedelta(hours=2), now + timedelta(hours=3), flatten_at_end=False)
    runtime = await make_runtime(rules)
    account = sim.account_ids[0]
    await quiet(runtime)
    assert held_by(runtime, account, "RULE-009") is None  # nothing held, nothing done yet
    since = mark()
    buy(sim, account, MNQ, 1)
    await wait_close(sim, account, MNQ, since)
    record = await logged(runtime, "RULE-009", "flatten", target="account")
    # The market order reaches riskman before its fill: the entry order breaks the rule.
    assert "outside the trading session" in record.reason
    assert held_by(runtime, account, "RULE-009") is not None
    await gate_closes_new_position(sim, runtime, account, ES)


async def test_session_end_flattens_and_locks_until_the_next_session(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    clock = ShiftedClock.before_next_minute(4.0)
    end = clock.minute
    runtime = await make_runtime(session(end - timedelta(hours=1), end), clock=clock)
    account = sim.account_ids[0]
    sim.set_price(MES, "6650")
    buy(sim, account, MNQ, 1)
    entry = limit_buy(sim, account, MES, "6600")
    await seen(runtime, account, MNQ, 1)
    assert clock.now() < end, "riskman started too slowly for this test"
    assert held_by(runtime, account, "RULE-009") is None
    since = mark()
    await wait_close(sim, account, MNQ, since)
    assert clock.now() >= end
    await wait_cancel(sim, account, entry, since)
    record = await logged(runtime, "RULE-009", "flatten", target="account")
    assert "the trading session ended" in record.reason
    lock = held_by(runtime, account, "RULE-009")
    assert lock is not None and lock.until == end + timedelta(days=1) - timedelta(hours=1)
    await gate_closes_new_position(sim, runtime, account, ES)


async def test_session_start_ends_the_lock_and_trading_resumes(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    clock = ShiftedClock.before_next_minute(4.0)
    start = clock.minute
    runtime = await make_runtime(session(start, start + timedelta(hours=1)), clock=clock)
    account = sim.account_ids[0]
    # Armed before the session: locked until it starts.
    await eventually(lambda: held_by(runtime, account, "RULE-009") is not None)
    lock = held_by(runtime, account, "RULE-009")
    assert lock is not None and lock.until == start
    await eventually(lambda: held_by(runtime, account, "RULE-009") is None, timeout=10)
    assert clock.now() >= start
    await stays_open(sim, runtime, account, MNQ)


# --- RULE-010 auth_loss_guard ----------------------------------------------------------------


async def test_can_trade_false_flattens_cancels_and_locks_until_can_trade_again(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"auth_loss_guard": {}})
    account = sim.account_ids[0]
    sim.set_price(MES, "6650")
    buy(sim, account, MNQ, 2)
    entry = limit_buy(sim, account, MES, "6600")
    await seen(runtime, account, MNQ, 2)
    since = mark()
    sim.set_can_trade(account, False)
    await wait_close(sim, account, MNQ, since)
    await wait_cancel(sim, account, entry, since)
    lock = held_by(runtime, account, "RULE-010")
    assert lock is not None and lock.unlock is Unlock.CAN_TRADE and lock.until is None
    await logged(runtime, "RULE-010", "flatten", target="account")
    # The gateway refuses the trader's orders meanwhile (AccountViolation).
    with pytest.raises(SimRejected) as refused:
        buy(sim, account, MNQ, 1)
    assert refused.value.code == 4
    sim.set_can_trade(account, True)
    await eventually(lambda: held_by(runtime, account, "RULE-010") is None)
    await stays_open(sim, runtime, account, MNQ)


async def test_an_order_that_fills_while_trading_is_locked_is_closed_by_the_gate(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    # The gateway refuses new orders while canTrade is false, but one riskman could not
    # cancel (the cancel was refused) can still fill: the lockout gate closes what it opens.
    runtime = await make_runtime({"auth_loss_guard": {}})
    account = sim.account_ids[0]
    sim.set_price(MES, "6650")
    entry = limit_buy(sim, account, MES, "6640")
    await eventually(lambda: engine_of(runtime).state.get_order(account, entry) is not None)
    sim.faults.fail("Order/cancel", error_code=3, error_message="cannot cancel", times=20)
    sim.set_can_trade(account, False)
    await logged(runtime, "RULE-010", "cancel", result="failed")
    await logged(runtime, "RULE-010", "flatten", target="account")
    sim.faults.clear()
    since = mark()
    sim.set_price(MES, "6639")  # the entry fills
    await wait_close(sim, account, MES, since)
    await logged(runtime, "LOCKOUT", "close", target=MES)
    assert held_by(runtime, account, "RULE-010") is not None


# --- RULE-011 symbol_blocks ------------------------------------------------------------------


async def test_blocked_symbol_is_closed_cancelled_and_locked_other_symbols_untouched(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"symbol_blocks": {"symbols": ["RTY", "ES"]}})
    account = sim.account_ids[0]
    sim.set_price(RTY, "2400")
    buy(sim, account, M2K, 1)  # the micro is another root: not blocked
    buy(sim, account, MES, 1)  # blocking ES (= EP) does not block MES
    await seen(runtime, account, MES, 1)
    since = mark()
    entry = limit_buy(sim, account, RTY, "2300")
    await wait_cancel(sim, account, entry, since)
    lock = held_by(runtime, account, "RULE-011")
    assert lock is not None and lock.symbol == "RTY" and lock.unlock is Unlock.CONFIG
    since = mark()
    buy(sim, account, ES, 1)
    await wait_close(sim, account, ES, since)
    # RULE-011 locks ES on the first event of the fill it sees, and the position the fill
    # opens is closed once: by RULE-011 itself when the trade and the position update are
    # routed first (issue 16: they overtake the order update), else by the lockout gate.
    await logged(runtime, "RULE-011", "lockout", target="EP", result="lockout")
    await eventually(
        lambda: any(
            r.action == "close" and r.target == ES and r.result == "ok"
            for r in engine_of(runtime).recent_log()
            if r.rule in ("RULE-011", "LOCKOUT")
        )
    )
    locked = {lock.symbol for lock in engine_of(runtime).lockouts.get_lockout_info(account)}
    assert locked == {"RTY", "EP"}
    # RTY is locked: a position opened in it is closed by the gate; other symbols trade on.
    await gate_closes_new_position(sim, runtime, account, RTY)
    await quiet(runtime)
    assert {c: p.size for c, p in sim_positions(sim, account).items()} == {M2K: 1, MES: 1}


async def test_removing_a_symbol_from_the_block_list_waits_for_the_reset(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"symbol_blocks": {"symbols": ["RTY"]}})
    account = sim.account_ids[0]
    since = mark()
    buy(sim, account, RTY, 1)
    await wait_close(sim, account, RTY, since)
    await eventually(lambda: held_by(runtime, account, "RULE-011") is not None)
    engine = engine_of(runtime)
    settings = engine.settings.model_copy(deep=True)
    settings.rules.symbol_blocks.symbols = []
    pending = await engine.apply_settings(settings)
    # Unblocking is looser (issue 13): the lock holds until the daily reset.
    assert [(p.key, p.new) for p in pending] == [("rules.symbol_blocks.symbols", [])]
    assert held_by(runtime, account, "RULE-011") is not None
    await gate_closes_new_position(sim, runtime, account, RTY)


# --- RULE-012 trade_management ---------------------------------------------------------------

TM = {
    "trade_management": {
        "breakeven": {"trigger_ticks": 4, "offset_ticks": 1},
        "trailing": {"activation_ticks": 8, "distance_ticks": 4},
    }
}


def stop_price_of(body: dict[str, Any]) -> Decimal:
    return Decimal(str(body["stopPrice"]))


async def test_trade_management_places_a_breakeven_stop_then_trails_it(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime(TM)
    account = sim.account_ids[0]
    sim.set_price(MNQ, "24500")
    buy(sim, account, MNQ, 1)  # 24500.25, no stop
    await seen(runtime, account, MNQ, 1)
    since = mark()
    sim.set_price(MNQ, "24501.25")  # +4 ticks at the bid: breakeven
    placed = await sim.wait_for_request("Order/place", timeout=10, since=since)
    assert placed.body["accountId"] == account and placed.body["contractId"] == MNQ
    assert placed.body["type"] == OrderType.STOP and placed.body["side"] == OrderSide.ASK
    assert placed.body["size"] == 1
    assert stop_price_of(placed.body) == Decimal("24500.50")  # entry + 1 tick
    assert placed.response is not None and placed.response["success"] is True
    stop_id = placed.response["orderId"]
    await eventually(lambda: stop_id in working_ids(sim, account))
    await eventually(lambda: engine_of(runtime).state.get_order(account, stop_id) is not None)
    since = mark()
    sim.set_price(MNQ, "24502.25")  # +8 ticks: trail 4 ticks behind the bid
    modified = await sim.wait_for_request("Order/modify", timeout=10, since=since)
    assert modified.body == {"accountId": account, "orderId": stop_id, "stopPrice": 24501.25}
    await eventually(
        lambda: (
            next(o for o in sim.open_orders(account) if o.id == stop_id).stop_price
            == Decimal("24501.25")
        )
    )
    await logged(runtime, "RULE-012", "move stop")
    # A drop to the stop takes the position out at a profit.
    sim.set_price(MNQ, "24501")
    await eventually(lambda: sim_positions(sim, account) == {})
    await quiet(runtime)
    assert len(bodies(sim, "Order/place")) == 1  # placed once, never again


async def test_trade_management_moves_the_traders_bracket_stop_to_breakeven(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime(TM)
    account = sim.account_ids[0]
    sim.set_price(ES, "6650")
    sim.submit_order(account, ES, OrderSide.ASK, 2, stop_loss_ticks=20)  # short 2 at 6650
    await seen(runtime, account, ES, 2)
    stop = next(o for o in sim.open_orders(account) if o.contract_id == ES)
    assert stop.stop_price == Decimal("6655")
    await eventually(lambda: engine_of(runtime).state.get_order(account, stop.id) is not None)
    since = mark()
    # A short is marked at the ask: 6648.75 is 5 ticks in profit.
    sim.set_price(ES, "6648.50", bid="6648.50", ask="6648.75")
    modified = await sim.wait_for_request("Order/modify", timeout=10, since=since)
    assert modified.body == {"accountId": account, "orderId": stop.id, "stopPrice": 6649.75}
    await quiet(runtime)
    assert bodies(sim, "Order/place", since) == []
    assert sim_positions(sim, account)[ES].size == 2


# --- RULE-013 daily_realized_profit ----------------------------------------------------------


async def test_daily_profit_target_flattens_cancels_locks_and_gates_new_positions(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"daily_realized_profit": {"target": 50}})
    account = sim.account_ids[0]
    sim.set_price(ES, "6650")
    sim.set_price(MES, "6650")
    buy(sim, account, MNQ, 1)
    entry = limit_buy(sim, account, MES, "6600")
    await seen(runtime, account, MNQ, 1)
    since = mark()
    buy(sim, account, ES, 1)  # 6650.25
    sim.set_price(ES, "6652")
    sell(sim, account, ES, 1)  # +$87.50 less fees
    await wait_close(sim, account, MNQ, since)
    await wait_cancel(sim, account, entry, since)
    lock = held_by(runtime, account, "RULE-013")
    assert lock is not None and lock.unlock is Unlock.RESET
    record = await logged(runtime, "RULE-013", "flatten", target="account")
    assert "target reached" in record.reason
    await gate_closes_new_position(sim, runtime, account, ES)


# --- RULE-014 max_loss_limit -----------------------------------------------------------------


async def test_max_loss_limit_breached_by_open_loss_locks_until_an_admin_clears_it(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime(
        {"max_loss_limit": {"starting_balance": 50000, "drawdown": 2000}}  # floor $48,000
    )
    account = sim.account_ids[0]
    sim.set_balance(account, "48100")
    sim.set_price(ES, "6650")
    sim.set_price(MES, "6650")
    entry = limit_buy(sim, account, MES, "6600")
    buy(sim, account, ES, 1)  # 6650.25; fees leave 48,098.60
    await seen(runtime, account, ES, 1)
    since = mark()
    sim.set_price(ES, "6648.25")  # -$100 open: 47,998.60 <= 48,000
    await wait_close(sim, account, ES, since)
    await wait_cancel(sim, account, entry, since)
    lock = held_by(runtime, account, "RULE-014")
    assert lock is not None and lock.unlock is Unlock.ADMIN and lock.until is None
    record = await logged(runtime, "RULE-014", "flatten", target="account")
    assert "$48,000.00" in record.reason
    await gate_closes_new_position(sim, runtime, account, MNQ)
    # Only an admin ends it (an unlock request that fell due: the delay is not waited here).
    await engine_of(runtime)._clear_now(account, "reviewed with the trader")
    assert held_by(runtime, account, "RULE-014") is None
    sim.set_balance(account, "49000")
    await stays_open(sim, runtime, account, MNQ)


async def test_max_loss_limit_breached_by_the_balance_alone(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"max_loss_limit": {"starting_balance": 50000, "drawdown": 2000}})
    account, other = sim.account_ids[:2]
    sim.set_balance(account, "48000")  # at the floor
    await eventually(lambda: held_by(runtime, account, "RULE-014") is not None)
    await gate_closes_new_position(sim, runtime, account, MNQ)
    assert held_by(runtime, other, "RULE-014") is None


# --- RULE-015 contract_weights (an option of RULE-001/002) -----------------------------------


async def test_micro_weights_count_ten_micros_as_one_contract(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime(
        {"max_contracts": {"limit": 1}, "contract_weights": {"enabled": True, "micro_weight": 0.1}}
    )
    account = sim.account_ids[0]
    since = mark()
    buy(sim, account, MNQ, 10)  # 10 x 0.1 = 1: at the limit
    await seen(runtime, account, MNQ, 10)
    await quiet(runtime)
    assert bodies(sim, "Position/partialCloseContract", since) == []
    buy(sim, account, MNQ, 1)  # 1.1
    request = await sim.wait_for_request("Position/partialCloseContract", timeout=10, since=since)
    assert request.body == {"accountId": account, "contractId": MNQ, "size": 1}
    await eventually(lambda: sim_positions(sim, account)[MNQ].size == 10)
    record = await logged(runtime, "RULE-001", "reduce", target=MNQ)
    assert "1.1 contracts" in record.reason


async def test_micro_weights_apply_to_the_per_instrument_limit(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime(
        {
            "max_contracts_per_instrument": {"limits": {"MES": 1}, "default_limit": None},
            "contract_weights": {"enabled": True},
        }
    )
    account = sim.account_ids[0]
    since = mark()
    buy(sim, account, MES, 12)  # 1.2 weighted against 1: two micros too many
    request = await sim.wait_for_request("Position/partialCloseContract", timeout=10, since=since)
    assert request.body == {"accountId": account, "contractId": MES, "size": 2}
    await eventually(lambda: sim_positions(sim, account)[MES].size == 10)
    record = await logged(runtime, "RULE-002", "reduce", target=MES)
    assert "(weighted)" in record.reason

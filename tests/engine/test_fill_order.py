"""A fill is counted once, whatever order its events arrive in (issue 11).

The gateway streams one fill as order update, trade, position update(s) and account update. A
fake broker below plays fill sequences (open, add, partial close, full close, reversal; fees;
two contracts; two accounts; prices moving between fills) and delivers each fill's events in
the canonical order, one frame, and in another order, split across frames a millisecond apart,
possibly without the position update (until a REST read of the positions). Every decision of
every rule (and of the lockout gate) made during each step must be the same both ways: the
same closes, reductions, locks and cooldowns, with the same reasons and amounts.

Enforcement is recorded, not carried out (the actions are a no-op at the module boundary): the
trader's fills alone drive the account, so both runs see the same gateway.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import tempfile
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from riskman.core.clock import FakeClock
from riskman.core.enums import OrderSide, OrderStatus, OrderType, PositionType
from riskman.core.intents import Intent
from riskman.core.models import Account, Order, Position, Quote, Trade
from riskman.core.ports import (
    AccountEvent,
    AccountSnapshot,
    OrderEvent,
    PositionEvent,
    QuoteEvent,
    TradeEvent,
)
from riskman.engine.actions import EnforcementActions
from riskman.engine.engine import Engine
from riskman.engine.router import PositionsSnapshot, ReconcileEvent
from riskman.rules import ALL_RULES
from tests.conftest import make_settings
from tests.fakes import ES, MNQ, T0, FakeGateway, contract

ACCOUNTS = (7, 8)
TICK = Decimal("0.25")
START = {MNQ: Decimal(21000), ES: Decimal(5000)}
TICK_VALUE = {MNQ: Decimal("0.50"), ES: Decimal("12.50")}
FEE = {MNQ: Decimal("0.37"), ES: Decimal("1.40")}
BALANCE = Decimal(50000)
QUANTUM = Decimal("0.000000001")


def rules(include_unrealized: bool) -> dict[str, Any]:
    return {
        "max_contracts": {"enabled": True, "limit": 4, "count_orders": True},
        "max_contracts_per_instrument": {"enabled": True, "default_limit": 3, "limits": {}},
        "daily_realized_loss": {
            "enabled": True,
            "limit": 300,
            "include_unrealized": include_unrealized,
        },
        "daily_unrealized_loss": {"enabled": True, "limit": 250},
        "max_unrealized_profit": {"enabled": True, "target": 400},
        "trade_frequency_limit": {
            "enabled": True,
            "per_minute": 3,
            "per_hour": 8,
            "per_session": 40,
            "count_trades_as": "orders" if include_unrealized else "fills",
        },
        "cooldown_after_loss": {
            "enabled": True,
            "tiers": [{"loss": 50, "cooldown": 120}, {"loss": 150, "cooldown": 300}],
        },
        "daily_realized_profit": {"enabled": True, "target": 500},
        "max_loss_limit": {"enabled": True, "starting_balance": 50000, "drawdown": 350},
        "auth_loss_guard": {"enabled": True},
        "session_block_outside": {"enabled": False},
        "no_stop_loss_grace": {"enabled": False},
        "symbol_blocks": {"enabled": False},
        "trade_management": {"enabled": False},
        # Issue 15's rules and options (the two runs differ in more than the P&L view).
        # The equity trail's high is sampled when the rule evaluates, but it waits for fills
        # and a quote between a fill's events leaves the price where it was: every order sees
        # the same balances + open P&L, so both trails are compared.
        "trailing_daily_loss": {
            "enabled": True,
            "limit": 280,
            "trail": "equity" if include_unrealized else "realized",
        },
        "weekly_limits": {
            "enabled": True,
            "loss": 320,
            "profit": 450,
            "trades": 12,
            "include_unrealized": include_unrealized,
            "count_trades_as": "fills" if include_unrealized else "orders",
        },
        "no_averaging_down": {"enabled": True},
        "no_flip": {"enabled": True},
        "stop_discipline": {"enabled": True, "max_ticks": 40},
        "blackouts": {
            "enabled": True,
            "windows": [{"start": "2026-11-18T09:01", "end": "2026-11-18T09:02"}],
        },
    }


# --- the broker: what the gateway sends for one fill -------------------------------------------


@dataclass
class _Held:
    signed: int
    average: Decimal
    opened: datetime
    pid: int


@dataclass
class Broker:
    two_updates_on_reversal: bool
    positions: dict[tuple[int, str], _Held] = field(default_factory=dict)
    balances: dict[int, Decimal] = field(default_factory=lambda: dict.fromkeys(ACCOUNTS, BALANCE))
    last: dict[str, Decimal] = field(default_factory=lambda: dict(START))
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(500))

    def quote(self, contract_id: str) -> QuoteEvent:
        last = self.last[contract_id]
        return QuoteEvent(contract_id, Quote(last_price=last, best_bid=last, best_ask=last + TICK))

    def position_model(self, account_id: int, contract_id: str) -> Position | None:
        held = self.positions.get((account_id, contract_id))
        if held is None:
            return None
        return Position(
            id=held.pid,
            account_id=account_id,
            contract_id=contract_id,
            creation_timestamp=held.opened,
            type=PositionType.LONG if held.signed > 0 else PositionType.SHORT,
            size=abs(held.signed),
            average_price=held.average,
        )

    def open_positions(self, account_id: int) -> tuple[Position, ...]:
        found = (self.position_model(account_id, c) for c in (MNQ, ES))
        return tuple(p for p in found if p is not None)

    def fill(
        self, account_id: int, contract_id: str, qty: int, offset: int, at: datetime
    ) -> list[tuple[str, Any]]:
        """The events of one fill of `qty` contracts (signed) at the market +/- ticks."""
        price = self.last[contract_id] + offset * TICK
        key = (account_id, contract_id)
        held = self.positions.get(key)
        side = OrderSide.BID if qty > 0 else OrderSide.ASK
        size = abs(qty)
        pnl: Decimal | None = None
        updates: list[Position] = []
        closed_model = None
        if held is None:
            self.positions[key] = _Held(qty, price, at, next(self.ids))
        elif (held.signed > 0) == (qty > 0):
            total = abs(held.signed) + size
            average = (held.average * abs(held.signed) + price * size) / total
            held.average = average.quantize(QUANTUM)
            held.signed += qty
        else:
            closed = min(abs(held.signed), size)
            direction = 1 if held.signed > 0 else -1
            pnl = (price - held.average) / TICK * TICK_VALUE[contract_id] * closed * direction
            remaining = held.signed + qty
            if remaining == 0 or (remaining > 0) != (held.signed > 0):
                closed_model = Position(
                    id=held.pid,
                    account_id=account_id,
                    contract_id=contract_id,
                    creation_timestamp=held.opened,
                    type=PositionType.UNDEFINED,
                    size=0,
                    average_price=held.average,
                )
                del self.positions[key]
                if remaining:
                    self.positions[key] = _Held(remaining, price, at, next(self.ids))
            else:
                held.signed = remaining
        after = self.position_model(account_id, contract_id)
        if closed_model is not None and (after is None or self.two_updates_on_reversal):
            updates.append(closed_model)
        if after is not None:
            updates.append(after)
        fees = FEE[contract_id] * size
        self.balances[account_id] += (pnl or Decimal(0)) - fees
        order_id = next(self.ids)
        order = Order(
            id=order_id,
            account_id=account_id,
            contract_id=contract_id,
            creation_timestamp=at,
            update_timestamp=at,
            status=OrderStatus.FILLED,
            type=OrderType.MARKET,
            side=side,
            size=size,
            fill_volume=size,
            filled_price=price,
        )
        trade = Trade(
            id=next(self.ids),
            account_id=account_id,
            contract_id=contract_id,
            creation_timestamp=at,
            price=price,
            profit_and_loss=pnl,
            fees=fees,
            side=side,
            size=size,
            order_id=order_id,
        )
        account = Account(
            id=account_id, name=f"ACC-{account_id}", balance=self.balances[account_id]
        )
        return [
            ("order", OrderEvent(order)),
            ("trade", TradeEvent(trade)),
            *(("position", PositionEvent(update)) for update in updates),
            ("account", AccountEvent(account)),
        ]


# --- a scenario, and one run of it -------------------------------------------------------------


@dataclass(frozen=True)
class Fill:
    account_id: int
    contract_id: str
    qty: int
    offset: int
    gap: float
    order_keys: tuple[int, ...]
    """Sort keys of the fill's events in the permuted delivery."""
    splits: tuple[bool, ...]
    """A frame boundary after each event (permuted delivery)."""
    drop_position: bool
    quote_at: int = 9
    """A quote of the fill's contract (price unchanged) arrives after this many of its events
    (permuted delivery; 9: none): rules are evaluated on the state between them."""
    """The position update(s) never come; a REST read of the positions does, after the fill."""


@dataclass(frozen=True)
class Move:
    contract_id: str
    ticks: int
    gap: float


Step = Fill | Move


@dataclass(frozen=True)
class Scenario:
    include_unrealized: bool
    two_updates_on_reversal: bool
    steps: tuple[Step, ...]


class _NoActions(EnforcementActions):
    """Decisions are recorded before they reach here; nothing is sent to the gateway."""

    def close_all_positions(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        return None

    def close_position(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        return None

    def reduce_position_to_limit(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        return None

    def cancel_all_orders(self, *args: Any, **kwargs: Any) -> list[Any]:  # type: ignore[override]
        return []

    def cancel_order(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        return None

    def modify_stop(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        return None

    def place_stop(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        return None


def describe(intent: Intent) -> tuple[Any, ...]:
    reason = intent.reason
    if intent.rule == "LOCKOUT":
        # The gate acts on a position update at once, even before its fill: when the fill
        # then starts another cooldown, the gate's reason names the lock in force when it
        # acted. What it does (close, or cut back to a size) is compared in full.
        reason = reason.split(" (", 1)[0]
    return (
        type(intent).__name__,
        intent.rule,
        intent.account_id,
        getattr(intent, "contract_id", None),
        getattr(intent, "target_size", None),
        reason,
        getattr(intent, "until", None),
        getattr(intent, "kind", None),
    )


Decisions = list[set[tuple[Any, ...]]]


async def play(scenario: Scenario, *, canonical: bool, folder: Path) -> Decisions:
    clock = FakeClock(T0)
    gateway = FakeGateway()
    engine = await Engine.open(
        make_settings(folder, rules(scenario.include_unrealized)),
        gateway,
        clock=clock,
        rule_classes=ALL_RULES,
    )
    engine.actions.__class__ = _NoActions
    for contract_id in (MNQ, ES):
        engine.contracts.cache_contract(contract(contract_id))
    broker = Broker(scenario.two_updates_on_reversal)
    decisions: Decisions = [set() for _ in range(len(scenario.steps) + 2)]
    step = 0
    enforce = engine.router._enforce

    async def recording(intents: Any, received: float) -> bool:
        intents = list(intents)
        decisions[step].update(describe(i) for i in intents)
        return await enforce(intents, received)

    engine.router._enforce = recording  # type: ignore[method-assign]
    try:
        await engine.start()
        await engine.drain()
        for account_id in ACCOUNTS:  # the feed's first REST read of each account
            account = Account(id=account_id, balance=BALANCE)
            await engine.process(ReconcileEvent(AccountSnapshot(account, [], [], [])))
        for contract_id in (MNQ, ES):
            await engine.process(broker.quote(contract_id))
        for index, item in enumerate(scenario.steps, start=1):
            step = index
            await clock.advance(item.gap)
            start = clock.now()
            if isinstance(item, Move):
                broker.last[item.contract_id] += item.ticks * TICK
                for contract_id in (MNQ, ES):
                    await engine.process(broker.quote(contract_id))
                continue
            for contract_id in (MNQ, ES):  # the live feed keeps quotes fresh
                await engine.process(broker.quote(contract_id))
            events = broker.fill(item.account_id, item.contract_id, item.qty, item.offset, start)
            for position in broker.open_positions(item.account_id):
                gateway.set_position(position)
            gateway.positions[item.account_id] = {
                p.contract_id: p for p in broker.open_positions(item.account_id)
            }
            frames: list[list[Any]] = [[event for _, event in events]]
            if not canonical:
                # Any order of the kinds of events; a reversal's two position updates keep
                # their own order (one stream: the gateway never reports them backwards).
                keys = list(item.order_keys[: len(events)])
                last = -1
                for number, (kind, _) in enumerate(events):
                    if kind == "position":
                        keys[number] = last = max(keys[number], last)
                keyed = sorted(enumerate(events), key=lambda pair: (keys[pair[0]], pair[0]))
                if item.drop_position:
                    keyed = [pair for pair in keyed if pair[1][0] != "position"]
                frames = [[]]
                for position_in_order, (_, (_, event)) in enumerate(keyed):
                    if position_in_order == item.quote_at:
                        frames[-1].append(broker.quote(item.contract_id))
                    frames[-1].append(event)
                    if position_in_order < len(item.splits) and item.splits[position_in_order]:
                        frames.append([])
            for number, frame in enumerate(frames):
                if number:
                    await clock.advance(0.001)
                for event in frame:
                    await engine.process(replace(event, received=clock.monotonic()))
            if not canonical and item.drop_position:
                await clock.advance(0.001)
                await engine.process(
                    PositionsSnapshot(
                        item.account_id,
                        broker.open_positions(item.account_id),
                        clock.monotonic(),
                    )
                )
            await clock.set(start + timedelta(seconds=0.01))
        step = len(scenario.steps) + 1
        await clock.advance(5)
        await engine.drain()
    finally:
        await engine.close()
    return decisions


def run(scenario: Scenario, *, canonical: bool) -> Decisions:
    with tempfile.TemporaryDirectory() as folder:
        return asyncio.run(play(scenario, canonical=canonical, folder=Path(folder)))


def subsumed(decisions: set[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    """The step's decisions without the gate's cut-backs of a position it also closes.

    The gate acts on a position update at once, even before its fill. When the fill then
    starts a hard lock on top of a cooldown (a loss limit breached by the addition), a
    position update ahead of its trade was first cut back under the cooldown, then closed
    under the lock; in the canonical order the lock comes first and the gate only closes.
    The close covers the cut (closing what is left of a partly closed position), so what
    happens to the account is the same: the cut is not compared.
    """
    closed = {(d[2], d[3]) for d in decisions if d[0] == "ClosePosition" and d[1] == "LOCKOUT"}
    return {
        d
        for d in decisions
        if not (d[0] == "ReducePosition" and d[1] == "LOCKOUT" and (d[2], d[3]) in closed)
    }


def check(scenario: Scenario) -> None:
    expected = [subsumed(step) for step in run(scenario, canonical=True)]
    got = [subsumed(step) for step in run(scenario, canonical=False)]
    for index, (want, have) in enumerate(zip(expected, got, strict=True)):
        assert have == want, (
            f"step {index}: {scenario.steps[index - 1] if 0 < index <= len(scenario.steps) else ''}"
            f"\n only canonical: {sorted(want - have)}\n only permuted: {sorted(have - want)}"
        )


# --- strategies --------------------------------------------------------------------------------

GAPS = st.sampled_from([0.2, 2.0, 8.0, 30.0])

fills = st.builds(
    Fill,
    account_id=st.sampled_from(ACCOUNTS),
    contract_id=st.sampled_from([MNQ, ES]),
    qty=st.sampled_from([-3, -2, -1, 1, 2, 3]),
    offset=st.integers(-2, 2),
    gap=GAPS,
    order_keys=st.tuples(*[st.integers(0, 9)] * 5),
    splits=st.tuples(*[st.booleans()] * 4),
    drop_position=st.sampled_from([False, False, False, True]),
    quote_at=st.integers(0, 9),
)
moves = st.builds(
    Move,
    contract_id=st.sampled_from([MNQ, ES]),
    ticks=st.integers(-24, 24),
    gap=GAPS,
)
scenarios = st.builds(
    Scenario,
    include_unrealized=st.booleans(),
    two_updates_on_reversal=st.booleans(),
    steps=st.lists(st.one_of(fills, fills, moves), min_size=1, max_size=10).map(tuple),
)


@settings(
    # Bounded for CI (about 15 s on a loaded 2-core machine); FILL_ORDER_EXAMPLES=500 for a
    # longer search.
    max_examples=int(os.environ.get("FILL_ORDER_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios)
@example(
    # Found by the search: the trade of an opening fill ahead of its position update let
    # RULE-016's equity trail sample a quote the engine drops as not live once the position
    # is held (nobody held the contract): the day's high differed with the order.
    scenario=Scenario(
        include_unrealized=True,
        two_updates_on_reversal=False,
        steps=(
            Fill(7, ES, qty=2, offset=-1, gap=0.2, order_keys=(0, 1, 0, 0, 0),
                 splits=(False,) * 4, drop_position=False, quote_at=0),
            Move(ES, ticks=-12, gap=0.2),
        ),
    )
)  # fmt: skip
@pytest.mark.timeout(900)
def test_every_order_and_frame_split_of_a_fill_decides_as_the_canonical_order(
    scenario: Scenario,
) -> None:
    check(scenario)


# --- the issue's own case, in every order ------------------------------------------------------

ISSUE_ORDERS = list(itertools.permutations(range(4)))


@pytest.mark.parametrize("order", ISSUE_ORDERS, ids=["".join(map(str, o)) for o in ISSUE_ORDERS])
def test_a_150_dollar_loss_closed_by_the_trader_never_locks_in_any_order(
    order: tuple[int, ...],
) -> None:
    # Buy 1 ES, the price falls 3 points (-$150 open), sell it: the canonical order decides a
    # RULE-007 cooldown only; so must every other order of the closing fill's four events.
    keys = (*order, 9)
    scenario = Scenario(
        include_unrealized=True,
        two_updates_on_reversal=False,
        steps=(
            Fill(7, ES, 1, 0, 1.0, (0, 1, 2, 3, 4), (False,) * 4, False),
            Move(ES, -12, 2.0),
            Fill(7, ES, -1, 0, 1.0, keys, (True, False, True, False), False),
        ),
    )
    expected = run(scenario, canonical=True)
    assert not any(d[0] == "Lock" and d[1] == "RULE-003" for step in expected for d in step)
    check(scenario)


def test_a_second_cooldown_on_top_of_a_blackout_cuts_back_as_in_the_canonical_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found with issue 15's rules: a RULE-021 blackout cooldown holds, MNQ grows (one fill's
    # position update never comes), then a fill starts a RULE-006 cooldown on top. The gate's
    # baseline must not depend on which cooldown the permuted events met first.
    base = rules

    def with_blackout(include_unrealized: bool) -> dict[str, Any]:
        window = {"start": "2026-11-18T09:01", "end": "2026-11-18T09:02"}
        return {
            **base(include_unrealized),
            "no_averaging_down": {"enabled": True},
            "blackouts": {"enabled": True, "windows": [window]},
        }

    monkeypatch.setattr(sys.modules[__name__], "rules", with_blackout)
    scenario = Scenario(
        include_unrealized=True,
        two_updates_on_reversal=False,
        steps=(
            Fill(7, MNQ, 1, -1, 30.0, (1, 7, 2, 6, 4), (False, False, True, False), False),
            Fill(7, ES, 2, 2, 8.0, (0, 5, 5, 5, 6), (False,) * 4, False),
            Move(ES, 5, 30.0),
            Fill(7, MNQ, 3, -2, 0.2, (9, 7, 4, 4, 6), (True, True, True, False), True),
            Fill(7, MNQ, 2, 1, 0.2, (9, 2, 1, 1, 3), (True, False, False, True), False),
        ),
    )
    expected = run(scenario, canonical=True)
    assert any(d[1] == "RULE-021" for step in expected for d in step)
    check(scenario)


def test_a_cut_back_under_a_cooldown_then_a_close_under_a_new_lock_counts_as_the_close() -> None:
    # Found with issue 15's rules: a RULE-021 blackout cooldown holds and ES long 2 is down;
    # buying 3 more breaches RULE-016's trailing floor. The position update runs ahead of its
    # trade: the gate cuts back to 2 under the cooldown, then closes under RULE-016's lock. In
    # the canonical order the lock comes first and the gate only closes (see `subsumed`).
    scenario = Scenario(
        include_unrealized=False,
        two_updates_on_reversal=False,
        steps=(
            Fill(8, ES, 2, -2, 30.8, (0, 1, 2, 3, 4), (False,) * 4, False),
            Move(ES, 8, 30.0),
            Move(ES, -21, 0.2),
            Fill(8, ES, 3, 0, 0.2, (0, 5, 0, 0, 0), (False,) * 4, False),
        ),
    )
    expected = run(scenario, canonical=True)
    assert ("Lock", "RULE-016") in {d[:2] for d in expected[4]}
    assert ("ClosePosition", "LOCKOUT") in {d[:2] for d in expected[4]}
    got = run(scenario, canonical=False)
    assert ("ReducePosition", "LOCKOUT") in {d[:2] for d in got[4]}
    check(scenario)

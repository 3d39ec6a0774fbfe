"""RULE-012 trade_management: move stops to breakeven, then trail them (automation, no breach).

Per position, from a fresh quote only (`PnlTracker.position_ticks`):
- breakeven: at `breakeven.trigger_ticks` in profit the stop belongs at entry + `offset_ticks`;
- trailing: at `trailing.activation_ticks` it belongs `distance_ticks` behind the mark (the bid
  of a long, the ask of a short, as the P&L uses).
The wanted stop is the tighter of the two that apply. Stops are only ever tightened: a protective
stop already at or past the wanted price is left alone (no intent at all, so MOD-001's one
modify per second per order is never spent on nothing), and the wanted price is never at or past
the mark. A trailing-stop order is trailed by the gateway itself and is not modified. A position
without a protective stop gets one placed (closing side, its size), once: while that placement
is pending (until a stop order shows up, or `PLACE_PENDING` seconds) it is not asked again.

Prices are rounded to the contract's tick away from the market (down for a long's sell stop, up
for a short's buy stop): a rounded stop never crosses the price and never trails closer than
`distance_ticks`.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from riskman.core.enums import OrderSide, OrderType
from riskman.core.facts import PositionState
from riskman.core.intents import Category, Intent, ModifyStop, PlaceStop
from riskman.core.models import Order
from riskman.core.rules import (
    CheckTrigger,
    OrderTrigger,
    PositionTrigger,
    QuoteTrigger,
    Rule,
    RuleContext,
    Trigger,
)
from riskman.core.views import RuleStatus
from riskman.symbols import display_symbol

PLACE_PENDING = 5.0
"""Seconds to wait for a placed stop to show up before placing it again."""


class TradeManagement(Rule):
    id = "RULE-012"
    key = "trade_management"
    title = "Breakeven and trailing stop"
    category = Category.AUTOMATION
    triggers = frozenset({QuoteTrigger, PositionTrigger, OrderTrigger, CheckTrigger})

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        self._placing: dict[tuple[int, str], float] = {}
        """(account, contract) -> Clock.monotonic() when a stop was asked for it."""

    def evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        positions = self.ctx.state.get_all_positions(account_id)
        held = {p.contract_id for p in positions}
        for key in [k for k in self._placing if k[0] == account_id and k[1] not in held]:
            del self._placing[key]
        if isinstance(trigger, QuoteTrigger):
            positions = [p for p in positions if p.contract_id == trigger.contract_id]
        intents: list[Intent] = []
        for state in positions:
            intents += self._manage(state)
        return intents

    def status(self, account_id: int) -> RuleStatus:
        cfg = self.cfg(account_id)
        parts = []
        stale = False
        for state in sorted(self.ctx.state.get_all_positions(account_id), key=lambda s: s.opened):
            ticks = self.ctx.pnl.position_ticks(state)
            symbol = display_symbol(state.root)
            if ticks is None:
                stale = True
                parts.append(f"{symbol} no fresh quote")
                continue
            parts.append(f"{symbol} {_ticks(ticks)} ticks, stop at {self._stop_label(state)}")
        limits = []
        if cfg.breakeven is not None:
            limits.append(
                f"breakeven+{cfg.breakeven.offset_ticks} at {cfg.breakeven.trigger_ticks} ticks"
            )
        if cfg.trailing is not None:
            limits.append(
                f"trail {cfg.trailing.distance_ticks} from {cfg.trailing.activation_ticks} ticks"
            )
        return RuleStatus(
            value="; ".join(parts) or "no position",
            limit=", ".join(limits),
            stale=stale,
        )

    # --- internals -----------------------------------------------------------------------

    def _manage(self, state: PositionState) -> list[Intent]:
        key = (state.account_id, state.contract_id)
        stops = self.ctx.state.protective_orders(state.account_id, state.contract_id)
        if stops:
            self._placing.pop(key, None)
        # A locked symbol is being flattened and the gate cancels its orders: leave it be.
        if self.ctx.lockouts.is_hard_locked(state.account_id, state.root):
            return []
        wanted = self._wanted(state)
        if wanted is None:
            return []
        price, why = wanted
        symbol = display_symbol(state.root)
        reason = f"{symbol} {why}: stop to {price}"
        if stops:
            return [
                ModifyStop(
                    rule=self.id,
                    account_id=state.account_id,
                    reason=reason,
                    category=self.category,
                    order_id=order.id,
                    stop_price=price,
                )
                for order in stops
                if _looser(order, price, state.sign)
            ]
        asked = self._placing.get(key)
        now = self.ctx.clock.monotonic()
        if asked is not None and now - asked < PLACE_PENDING:
            return []
        self._placing[key] = now
        return [
            PlaceStop(
                rule=self.id,
                account_id=state.account_id,
                reason=reason,
                category=self.category,
                contract_id=state.contract_id,
                side=OrderSide.ASK if state.sign > 0 else OrderSide.BID,
                size=state.size,
                stop_price=price,
            )
        ]

    def _wanted(self, state: PositionState) -> tuple[Decimal, str] | None:
        """Where the stop belongs now (price, why), or None (not far enough, no fresh quote)."""
        cfg = self.cfg(state.account_id)
        ticks = self.ctx.pnl.position_ticks(state)
        contract = self.ctx.contracts.get(state.contract_id)
        mark = self.ctx.quotes.get_mark(state.contract_id, state.sign)
        if ticks is None or contract is None or mark is None:
            return None
        tick = contract.tick_size
        sign = state.sign
        average = state.position.average_price
        candidates: list[tuple[Decimal, str]] = []
        if cfg.breakeven is not None and ticks >= cfg.breakeven.trigger_ticks:
            price = _round_stop(average + sign * cfg.breakeven.offset_ticks * tick, tick, sign)
            candidates.append((price, f"{_ticks(ticks)} ticks, breakeven"))
        if cfg.trailing is not None and ticks >= cfg.trailing.activation_ticks:
            price = _round_stop(mark - sign * cfg.trailing.distance_ticks * tick, tick, sign)
            candidates.append((price, f"{_ticks(ticks)} ticks, trailing"))
        # Never at or past the price: such a stop would fill at once (or be refused).
        candidates = [c for c in candidates if (mark - c[0]) * sign > 0]
        if not candidates:
            return None
        return max(candidates, key=lambda c: c[0] * sign)

    def _stop_label(self, state: PositionState) -> str:
        stops = self.ctx.state.protective_orders(state.account_id, state.contract_id)
        if not stops:
            return "none"
        priced = [o.stop_price for o in stops if o.stop_price is not None]
        if not priced:
            trailing = any(o.type is OrderType.TRAILING_STOP for o in stops)
            return "trailing (gateway)" if trailing else "bracket (pending)"
        contract = self.ctx.contracts.get(state.contract_id)
        best = max(priced, key=lambda p: p * state.sign)
        if contract is None:
            return str(best)
        offset = (best - state.position.average_price) / contract.tick_size * state.sign
        if offset == 0:
            return "breakeven"
        if offset > 0:
            return f"breakeven+{_ticks(offset, signed=False)}"
        return f"{_ticks(-offset, signed=False)} ticks risk"


def _round_stop(price: Decimal, tick: Decimal, sign: int) -> Decimal:
    """`price` on the tick grid, rounded away from the market (down for a long)."""
    rounding = ROUND_FLOOR if sign > 0 else ROUND_CEILING
    return (price / tick).to_integral_value(rounding=rounding) * tick


def _looser(order: Order, wanted: Decimal, sign: int) -> bool:
    """Is this stop further from the price than `wanted` (so moving it tightens)?"""
    if order.stop_price is None or order.type is OrderType.TRAILING_STOP:
        return False
    return (wanted - order.stop_price) * sign > 0


def _ticks(value: Decimal, *, signed: bool = True) -> str:
    whole = value == value.to_integral_value()
    text = f"{value:.0f}" if whole else f"{value:.1f}"
    return f"+{text}" if signed and value > 0 else text

"""RULE-019 no_flip: one fill that turns a long into a short (or back) is cut back to flat; the
trader may open the other side afterwards with a new order.

The gateway reports such a fill as a trade (closing, with its P&L) and the position going flat
and opening the other way, in an order that is not fixed (and a position update that changes
side directly counts too). A closing fill larger than the position it closes crossed zero:
- seen before the position updates: the new position is closed when it opens (within a few
  seconds);
- seen after them: the position just opened the other way is closed at once.
An opening order after the position went flat is a new trade, not a flip: its fill closes
nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from riskman.core.facts import PositionState
from riskman.core.intents import Category, ClosePosition, Intent
from riskman.core.rules import (
    CheckTrigger,
    PositionTrigger,
    Rule,
    RuleContext,
    TradeTrigger,
    Trigger,
)
from riskman.core.views import RuleStatus
from riskman.symbols import display_symbol

Key = tuple[int, str]
WITHIN = timedelta(seconds=5)
"""How close together the events of one fill arrive."""


class NoFlip(Rule):
    id = "RULE-019"
    key = "no_flip"
    title = "No flip"
    category = Category.CLOSE
    triggers = frozenset({PositionTrigger, TradeTrigger, CheckTrigger})

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        self._closed: dict[Key, tuple[int, int, datetime]] = {}
        """The side and size of the position last seen going flat, and when."""
        self._pending: dict[Key, tuple[int, datetime]] = {}
        """A fill crossed zero before the position showed it: the new side, and when."""
        self._flips: dict[int, int] = {}

    def evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        now = self.ctx.now()
        if isinstance(trigger, PositionTrigger):
            before, after = trigger.change.before, trigger.change.after
            if after is None:
                if before is not None:
                    self._closed[(account_id, before.contract_id)] = (before.sign, before.size, now)
                return []
            key = (account_id, after.contract_id)
            if before is not None and before.sign != after.sign:
                self._pending.pop(key, None)
                return [self._close(after)]
            pending = self._pending.get(key)
            if before is None and pending is not None:
                del self._pending[key]
                if pending[0] == after.sign and now - pending[1] <= WITHIN:
                    return [self._close(after)]
            return []
        if isinstance(trigger, TradeTrigger):
            return self._on_fill(account_id, trigger, now)
        return []

    def status(self, account_id: int) -> RuleStatus:
        flips = self._flips.get(account_id, 0)
        return RuleStatus(
            value=f"{flips} flip(s) cut back" if flips else "no flip",
            limit="one fill may not turn a position around",
            used=None,
        )

    # --- internals -----------------------------------------------------------------------

    def _on_fill(self, account_id: int, trigger: TradeTrigger, now: datetime) -> list[Intent]:
        trade = trigger.effect.trade
        if not trigger.effect.is_new or trade.voided or trade.profit_and_loss is None:
            return []  # only a closing fill can cross zero
        key = (account_id, trade.contract_id)
        side = trade.side.sign
        state = self.ctx.state.get_position(account_id, trade.contract_id)
        closed = self._closed.get(key)
        crossed = (
            closed is not None
            and closed[0] == -side
            and now - closed[2] <= WITHIN
            and trade.size > closed[1]
        )
        if state is not None and state.sign == -side:
            # The position is not updated yet: does this fill close more than it holds?
            if trade.size > state.size:
                self._pending[key] = (side, now)
            return []
        if state is not None and state.sign == side and crossed:
            # The position went flat and opened the other way before the fill arrived.
            self._closed.pop(key, None)
            return [self._close(state)]
        if state is None and crossed:
            # Flat already; the new side may still be on its way.
            self._pending[key] = (side, now)
        return []

    def _close(self, state: PositionState) -> ClosePosition:
        self._flips[state.account_id] = self._flips.get(state.account_id, 0) + 1
        side = "short" if state.sign < 0 else "long"
        return ClosePosition(
            rule=self.id,
            account_id=state.account_id,
            reason=f"one fill turned the position into {display_symbol(state.root)} {side} "
            f"{state.size}: cut back to flat",
            category=self.category,
            contract_id=state.contract_id,
        )

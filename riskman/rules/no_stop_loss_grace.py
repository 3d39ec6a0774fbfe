"""RULE-008 no_stop_loss_grace: a position without a protective stop `grace_seconds` after it
opened (or after its stop went away) is closed.

A protective stop is a working stop, stop-limit or trailing-stop order on the closing side of
the position (`StateManager.protective_orders`): suspended bracket children count (they get
their price when the entry fills), so does a trailing stop that only has a trail distance.
A closing-side stop at or past the entry price counts as well, although SPEC.md describes the
stop as "on the losing side of entry": a stop at breakeven or trailing in profit (where RULE-012
moves it) caps the loss even better, and refusing it would close every position RULE-012 has
just protected. A closing-side stop is always on the losing side of the market.

The grace of a position runs from when it opened, or from when its last stop disappeared.
Scaling in keeps the running grace; a reversal is a new position and starts a new one. Only the
grace timer (or a check) closes: a position or order event merely arms the timer, so the orders
that a reconnect replays right after the positions are seen before anything is closed.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from riskman.core.facts import PositionState
from riskman.core.intents import Category, ClosePosition, Intent
from riskman.core.rules import (
    CheckTrigger,
    OrderTrigger,
    PositionTrigger,
    Rule,
    RuleContext,
    TimerTrigger,
    Trigger,
)
from riskman.core.views import RuleStatus
from riskman.symbols import display_symbol

Key = tuple[int, str]
"""(account, contract)."""


class NoStopLossGrace(Rule):
    id = "RULE-008"
    key = "no_stop_loss_grace"
    title = "Stop loss required"
    category = Category.CLOSE
    triggers = frozenset({PositionTrigger, OrderTrigger, TimerTrigger, CheckTrigger})

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        # The rule's own bookkeeping (not engine state): since when each position has been
        # without a stop, and which positions had one the last time we looked (so a stop that
        # disappears starts a fresh grace instead of reusing the opening time).
        self._since: dict[Key, datetime] = {}
        self._protected: set[Key] = set()

    # --- rule API ------------------------------------------------------------------------

    async def restore(self) -> None:
        """Rebuild the grace timers of open positions without a stop.

        A position already past its grace is left to the start-up check, which closes it.
        """
        now = self.ctx.now()
        for account_id in self.ctx.state.position_accounts():
            if not self.enabled(account_id):
                continue
            for state, deadline in self._track(account_id, now, reopened=None):
                if deadline > now:
                    self.ctx.start_rule_timer(self.id, account_id, state.contract_id, deadline)

    def evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        now = self.ctx.now()
        reopened = None
        if isinstance(trigger, PositionTrigger) and trigger.change.opened:
            assert trigger.change.after is not None
            reopened = trigger.change.after.contract_id
        may_close = isinstance(trigger, TimerTrigger | CheckTrigger)
        intents: list[Intent] = []
        for state, deadline in self._track(account_id, now, reopened):
            if deadline <= now and may_close:
                intents.append(self._close(state))
            elif self.ctx.rule_timer_deadline(self.id, account_id, state.contract_id) != deadline:
                # A deadline already past is armed too: the timer fires at once, behind the
                # event being handled (whose orders may still bring the stop).
                self.ctx.start_rule_timer(self.id, account_id, state.contract_id, deadline)
        return intents

    def status(self, account_id: int) -> RuleStatus:
        cfg = self.cfg(account_id)
        now = self.ctx.now()
        positions = self.ctx.state.get_all_positions(account_id)
        grace = float(cfg.grace_seconds)
        limit = f"{grace:g} s grace"
        if not positions:
            return RuleStatus(value="no position", limit=limit, used=0.0)
        naked = [p for p in positions if not self._has_stop(p)]
        count = f"{len(positions)} position{'s' if len(positions) != 1 else ''}"
        if not naked:
            return RuleStatus(value=f"{count}, all with a stop", limit=limit, used=0.0)
        first = min(self._since.get((account_id, p.contract_id), p.opened) for p in naked)
        remaining = (first + timedelta(seconds=grace) - now).total_seconds()
        when = f"closes in {math.ceil(remaining)} s" if remaining > 0 else "closing"
        return RuleStatus(
            value=f"{count}, {len(naked)} without a stop ({when})",
            limit=limit,
            used=min(1.0, max(0.0, (now - first).total_seconds() / grace)),
            detail=", ".join(_label(p) for p in naked) + " without a stop",
        )

    # --- internals -----------------------------------------------------------------------

    def _has_stop(self, state: PositionState) -> bool:
        return bool(self.ctx.state.protective_orders(state.account_id, state.contract_id))

    def _track(
        self, account_id: int, now: datetime, reopened: str | None
    ) -> list[tuple[PositionState, datetime]]:
        """Update the bookkeeping; return the positions without a stop and their deadlines.

        `reopened` is the contract whose position just opened (or reversed): its grace starts
        again from its opening time.
        """
        grace = timedelta(seconds=float(self.cfg(account_id).grace_seconds))
        positions = {p.contract_id: p for p in self.ctx.state.get_all_positions(account_id)}
        for key in [k for k in self._since if k[0] == account_id and k[1] not in positions]:
            self._forget(key)
        self._protected -= {
            k for k in self._protected if k[0] == account_id and k[1] not in positions
        }
        naked = []
        for contract_id, state in positions.items():
            key = (account_id, contract_id)
            if self._has_stop(state):
                self._forget(key)
                self._protected.add(key)
                continue
            if contract_id == reopened or key not in self._since:
                stop_removed = key in self._protected and contract_id != reopened
                self._since[key] = now if stop_removed else state.opened
            self._protected.discard(key)
            naked.append((state, self._since[key] + grace))
        return naked

    def _forget(self, key: Key) -> None:
        if self._since.pop(key, None) is not None:
            self.ctx.cancel_rule_timer(self.id, key[0], key[1])

    def _close(self, state: PositionState) -> ClosePosition:
        grace = float(self.cfg(state.account_id).grace_seconds)
        return ClosePosition(
            rule=self.id,
            account_id=state.account_id,
            reason=f"{_label(state)} has no stop loss after the {grace:g} s grace",
            category=self.category,
            contract_id=state.contract_id,
        )


def _label(state: PositionState) -> str:
    side = "long" if state.sign > 0 else "short"
    return f"{display_symbol(state.root)} {side} {state.size}"

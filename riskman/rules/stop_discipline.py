"""RULE-020 stop_discipline: a protective stop only ever moves towards the market.

- `restore` (default true): a protective stop moved farther from the entry than it was (below
  its tightest price for a long, above it for a short) is put back there with `Order/modify`.
- `max_ticks`: a protective stop farther than that many ticks from the position's average entry
  is pulled in to that distance (a new stop, or the stop of a position whose entry moved).
- A protective stop cancelled while its position is open, leaving it without one: with RULE-008
  on, its no-stop grace starts (RULE-008 sees the stop go and starts a fresh grace); with
  RULE-008 off, the position is closed unless a new stop is in place within `cancel_grace`
  (the few seconds a trader needs to replace a stop, and the gateway to report a target fill
  that cancelled it).

A protective stop is a working stop, stop-limit or trailing-stop order on the closing side of
an open position (`StateManager.protective_orders`); one with no stop price yet (a suspended
bracket leg) is judged when it gets one. The tightest price of each stop is kept in
`rule_state` (written in the background), so a restart does not forget it. At most one modify
per second goes to an order (MOD-001): a widening that comes sooner is put back by a re-check
a second later.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from riskman.core.enums import OrderStatus
from riskman.core.facts import PositionState
from riskman.core.intents import Category, ClosePosition, Intent, ModifyStop
from riskman.core.models import Order
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

if TYPE_CHECKING:
    from riskman.config import StopDisciplineConfig

log = logging.getLogger(__name__)

RECHECK = "recheck"
RECHECK_AFTER = timedelta(seconds=1.1)
CANCELLED = "cancelled:"


class StopDiscipline(Rule):
    id = "RULE-020"
    key = "stop_discipline"
    title = "Stop discipline"
    category = Category.AUTOMATION
    triggers = frozenset({OrderTrigger, PositionTrigger, TimerTrigger, CheckTrigger})

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        self._tightest: dict[int, dict[int, Decimal]] = {}
        """Per account: order id -> the tightest stop price seen while it protected."""
        self._moved: dict[int, int] = {}

    # --- rule API ------------------------------------------------------------------------

    async def restore(self) -> None:
        for account_id, payload in (await self.ctx.load_rule_state(self.id)).items():
            try:
                stops = {int(k): Decimal(v) for k, v in json.loads(payload).items()}
            except (ValueError, TypeError, AttributeError, InvalidOperation):
                log.warning("%s: unreadable stops of account %s ignored", self.id, account_id)
                continue
            self._tightest[account_id] = stops

    def evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        if isinstance(trigger, OrderTrigger):
            change = trigger.change
            if change.after is None:
                return self._ended(account_id, change.before, change.ended)
            return self._check(account_id, [change.after])
        if isinstance(trigger, TimerTrigger) and trigger.name.startswith(CANCELLED):
            return self._close_if_naked(account_id, trigger.name.removeprefix(CANCELLED))
        if isinstance(trigger, PositionTrigger):
            state = trigger.change.after
            if state is None:
                return []
            return self._check(account_id, self._stops_of(state))
        orders = [
            order
            for state in self.ctx.state.get_all_positions(account_id)
            for order in self._stops_of(state)
        ]
        self._forget_gone(account_id)
        return self._check(account_id, orders)

    def status(self, account_id: int) -> RuleStatus:
        cfg: StopDisciplineConfig = self.cfg(account_id)
        stops = sum(
            len(self._stops_of(state)) for state in self.ctx.state.get_all_positions(account_id)
        )
        parts = ["no widening" if cfg.restore else "widening allowed"]
        if cfg.max_ticks is not None:
            parts.append(f"at most {cfg.max_ticks} ticks")
        return RuleStatus(
            value=f"{stops} protective stop{'s' if stops != 1 else ''}",
            limit=", ".join(parts),
            used=None,
            detail=f"{self._moved.get(account_id, 0)} stop(s) put back since start",
        )

    # --- internals -----------------------------------------------------------------------

    def _stops_of(self, state: PositionState) -> list[Order]:
        return self.ctx.state.protective_orders(state.account_id, state.contract_id)

    def _check(self, account_id: int, orders: list[Order]) -> list[Intent]:
        cfg: StopDisciplineConfig = self.cfg(account_id)
        intents: list[Intent] = []
        stored = self._tightest.setdefault(account_id, {})
        changed = False
        for order in orders:
            price = order.stop_price
            state = self.ctx.state.get_position(account_id, order.contract_id)
            if price is None or state is None:
                continue
            if order.id not in {o.id for o in self._stops_of(state)}:
                continue
            sign = state.sign
            tightest = stored.get(order.id)
            target = price
            why = ""
            if cfg.restore and tightest is not None and (price - tightest) * sign < 0:
                target, why = tightest, f"widened from {tightest} to {price}: put back"
            limit = self._limit(cfg, state)
            if limit is not None and (target - limit) * sign < 0:
                target, why = limit, f"more than {cfg.max_ticks} ticks from the entry: pulled in"
            best = target if tightest is None or (target - tightest) * sign > 0 else tightest
            if stored.get(order.id) != best:
                stored[order.id] = best
                changed = True
            if target == price:
                continue
            self._moved[account_id] = self._moved.get(account_id, 0) + 1
            side = "long" if sign > 0 else "short"
            intents.append(
                ModifyStop(
                    rule=self.id,
                    account_id=account_id,
                    reason=f"stop of {display_symbol(state.root)} {side} {state.size} {why}",
                    category=self.category,
                    order_id=order.id,
                    stop_price=target,
                )
            )
        if intents:
            # MOD-001 sends at most one modify a second per order: look again after that.
            self.ctx.start_rule_timer(self.id, account_id, RECHECK, self.ctx.now() + RECHECK_AFTER)
        if changed:
            self._save(account_id)
        return intents

    def _limit(self, cfg: StopDisciplineConfig, state: PositionState) -> Decimal | None:
        """The farthest stop `max_ticks` allows, or None."""
        if cfg.max_ticks is None:
            return None
        contract = self.ctx.contracts.get(state.contract_id)
        if contract is None:
            return None
        return state.position.average_price - state.sign * cfg.max_ticks * contract.tick_size

    def _ended(self, account_id: int, before: Order | None, ended: Order | None) -> list[Intent]:
        if before is None:
            return []
        stored = self._tightest.get(account_id, {})
        if stored.pop(before.id, None) is not None:
            self._save(account_id)
        state = self.ctx.state.get_position(account_id, before.contract_id)
        if state is None or ended is None or ended.status is not OrderStatus.CANCELLED:
            return []
        closing_side = -state.sign
        if not before.type.is_stop or before.side.sign != closing_side or self._stops_of(state):
            return []
        if self.ctx.rules(account_id).no_stop_loss_grace.enabled:
            return []  # RULE-008 starts a fresh grace for the position
        cfg: StopDisciplineConfig = self.cfg(account_id)
        at = self.ctx.now() + timedelta(seconds=float(cfg.cancel_grace))
        self.ctx.start_rule_timer(self.id, account_id, CANCELLED + before.contract_id, at)
        return []

    def _close_if_naked(self, account_id: int, contract_id: str) -> list[Intent]:
        state = self.ctx.state.get_position(account_id, contract_id)
        if state is None or self._stops_of(state):
            return []
        if self.ctx.rules(account_id).no_stop_loss_grace.enabled:
            return []
        side = "long" if state.sign > 0 else "short"
        return [
            ClosePosition(
                rule=self.id,
                account_id=account_id,
                reason=f"the stop of {display_symbol(state.root)} {side} {state.size} was "
                "cancelled with the position open",
                category=Category.CLOSE,
                contract_id=contract_id,
            )
        ]

    def _forget_gone(self, account_id: int) -> None:
        stored = self._tightest.get(account_id)
        if not stored:
            return
        working = {order.id for order in self.ctx.state.get_all_orders(account_id)}
        gone = [order_id for order_id in stored if order_id not in working]
        for order_id in gone:
            del stored[order_id]
        if gone:
            self._save(account_id)

    def _save(self, account_id: int) -> None:
        stops = {str(k): str(v) for k, v in self._tightest.get(account_id, {}).items()}
        self.ctx.defer_rule_state(self.id, account_id, json.dumps(stops))

"""RULE-001 max_contracts: open contracts above the limit are reduced (newest first) or closed.

`count: net` nets the expiries of one symbol (long MNQZ26 + short MNQH27 = 0) and adds the
symbols up; `count: gross` adds every contract. With RULE-015 weights a micro counts 0.1.

`scaling` (Topstep's scaling plan): the limit follows the account's profit over
`starting_balance` (by default RULE-014's), judged on the balance at each daily reset and held
for the whole trading day, never raised during it. Below the first tier, `limit` applies. The
day's limit is kept in `rule_state`; on a day riskman did not see start, it is judged on the
lower of the balance now and the balance at the day's start (now less today's realized P&L).

`count_orders` (TopstepX counts positions plus working orders): an entry order that would take
the account over its limit if it filled is cancelled as soon as it is seen. Entry orders are
working orders that would open or add (`StateManager.increases_exposure`); the stop and target
of an open position and suspended bracket legs never count.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from riskman.core.enums import OrderStatus
from riskman.core.facts import PositionState
from riskman.core.intents import CancelOrder, Category, CloseAll, Intent, ReducePosition
from riskman.core.models import Order
from riskman.core.rules import (
    CheckTrigger,
    OrderTrigger,
    PositionTrigger,
    Rule,
    RuleContext,
    Trigger,
)
from riskman.core.views import RuleStatus
from riskman.symbols import root_of

if TYPE_CHECKING:
    from riskman.config import MaxContractsConfig

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def fmt_count(value: Decimal) -> str:
    return f"{value.normalize():f}" if value != value.to_integral_value() else str(int(value))


def exposure(positions: list[PositionState], count: str, weight: dict[str, Decimal]) -> Decimal:
    """Contracts open, weighted: net per symbol root (`net`) or every contract (`gross`)."""
    if count == "gross":
        return sum((Decimal(p.size) * weight[p.root] for p in positions), Decimal(0))
    by_root: dict[str, int] = defaultdict(int)
    for p in positions:
        by_root[p.root] += p.signed_size
    return sum((Decimal(abs(n)) * weight[root] for root, n in by_root.items()), Decimal(0))


def reductions(
    positions: list[PositionState],
    excess: Decimal,
    count: str,
    weight: dict[str, Decimal],
) -> list[tuple[PositionState, int]]:
    """(position, contracts to cut) to remove `excess`, newest positions first.

    In net mode only positions on the side of their symbol's net position reduce exposure,
    and never by more than that net.
    """
    net: dict[str, int] = defaultdict(int)
    for p in positions:
        net[p.root] += p.signed_size
    cuts = []
    for p in sorted(positions, key=lambda s: s.grown, reverse=True):
        if excess <= 0:
            break
        w = weight[p.root]
        room = p.size
        if count == "net":
            if net[p.root] == 0 or (net[p.root] > 0) != (p.sign > 0):
                continue
            room = min(room, abs(net[p.root]))
        cut = min(room, math.ceil(excess / w))
        if cut <= 0:
            continue
        cuts.append((p, cut))
        excess -= cut * w
        if count == "net":
            net[p.root] -= cut * p.sign
    return cuts


def entry_orders(rule: Rule, account_id: int, root: str | None = None) -> list[Order]:
    """Working orders that would open or add if they filled, newest first (count_orders)."""
    orders = [
        order
        for order in rule.ctx.state.get_all_orders(account_id)
        if order.status.is_working
        and order.status is not OrderStatus.SUSPENDED
        and (root is None or root_of(order.contract_id) == root)
        and rule.ctx.state.increases_exposure(order)
    ]
    return sorted(orders, key=lambda o: (o.creation_timestamp or EPOCH, o.id), reverse=True)


def projected(
    positions: list[PositionState], orders: Iterable[Order], count: str, weight: dict[str, Decimal]
) -> Decimal:
    """Contracts open if every one of `orders` filled (in net mode: the worse side per root)."""
    if count == "gross":
        pending = sum(
            (Decimal(max(0, o.size - o.fill_volume)) * weight[root_of(o.contract_id)])
            for o in orders
        )
        return exposure(positions, "gross", weight) + Decimal(pending)
    net: dict[str, int] = defaultdict(int)
    buys: dict[str, int] = defaultdict(int)
    sells: dict[str, int] = defaultdict(int)
    for p in positions:
        net[p.root] += p.signed_size
    for o in orders:
        side = buys if o.side.sign > 0 else sells
        side[root_of(o.contract_id)] += max(0, o.size - o.fill_volume)
    roots = set(net) | set(buys) | set(sells)
    return sum(
        (Decimal(max(abs(net[r] + buys[r]), abs(net[r] - sells[r]))) * weight[r] for r in roots),
        Decimal(0),
    )


def over_limit_orders(
    rule: Rule,
    account_id: int,
    positions: list[PositionState],
    orders: list[Order],
    count: str,
    limit: int,
    only: Order | None,
) -> list[Order]:
    """The entry orders to cancel so that positions + orders stay within `limit`: `only` when
    it is given (the order just seen), else the newest first."""
    weight = {p.root: rule.ctx.weight(account_id, p.root) for p in positions}
    weight.update({root_of(o.contract_id): rule.ctx.weight(account_id, root_of(o.contract_id))
                   for o in orders})  # fmt: skip
    if projected(positions, orders, count, weight) <= limit:
        return []
    if only is not None:
        return [only] if any(o.id == only.id for o in orders) else []
    kept = list(orders)
    cancelled = []
    while kept and projected(positions, kept, count, weight) > limit:
        cancelled.append(kept.pop(0))
    return cancelled


def cancel_intents(rule: Rule, account_id: int, orders: list[Order], why: str) -> list[Intent]:
    return [
        CancelOrder(
            rule=rule.id,
            account_id=account_id,
            reason=f"entry order {order.id} would take {why}",
            category=Category.REDUCE,
            order_id=order.id,
        )
        for order in orders
    ]


class MaxContracts(Rule):
    id = "RULE-001"
    key = "max_contracts"
    title = "Max contracts"
    category = Category.REDUCE
    triggers = frozenset({PositionTrigger, OrderTrigger, CheckTrigger})

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        self._scaled: dict[int, tuple[date, int]] = {}
        """Per account: the trading day and the limit the scaling plan gives it."""
        self._loaded = False

    def _weights(self, account_id: int, positions: list[PositionState]) -> dict[str, Decimal]:
        return {p.root: self.ctx.weight(account_id, p.root) for p in positions}

    # --- scaling ------------------------------------------------------------------------

    async def restore(self) -> None:
        await self._load()

    async def on_reset(self, ended: date, at: datetime) -> None:
        await self._load()
        day = ended + timedelta(days=1)
        for account in self.ctx.state.accounts():
            cfg: MaxContractsConfig = self.cfg(account.id)
            if not cfg.scaling:
                continue
            limit = self._tier(account.id, account.balance)
            self._scaled[account.id] = (day, limit)
            payload = json.dumps({"day": day.isoformat(), "limit": limit})
            await self.ctx.save_rule_state(self.id, account.id, payload)
            log.info("%s account=%s scaling limit for %s: %s", self.id, account.id, day, limit)

    def limit(self, account_id: int) -> int:
        """Today's limit: `limit`, or the scaling plan's for today."""
        cfg: MaxContractsConfig = self.cfg(account_id)
        if not cfg.scaling:
            return int(cfg.limit)
        today = self.ctx.trading_day()
        held = self._scaled.get(account_id)
        if held is not None and held[0] == today:
            return held[1]
        account = self.ctx.state.get_account(account_id)
        if account is None:
            return int(cfg.limit)
        start_of_day = account.balance - self.ctx.pnl.get_daily_realized_pnl(account_id)
        limit = self._tier(account_id, min(account.balance, start_of_day))
        self._scaled[account_id] = (today, limit)
        payload = json.dumps({"day": today.isoformat(), "limit": limit})
        self.ctx.defer_rule_state(self.id, account_id, payload)
        return limit

    def _tier(self, account_id: int, balance: Decimal) -> int:
        cfg: MaxContractsConfig = self.cfg(account_id)
        start = cfg.starting_balance or self.ctx.rules(account_id).max_loss_limit.starting_balance
        profit = balance - start
        limit = int(cfg.limit)
        for tier in cfg.scaling:
            if profit > tier.balance_above:
                limit = int(tier.limit)
        return limit

    async def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for account_id, payload in (await self.ctx.load_rule_state(self.id)).items():
            try:
                data = json.loads(payload)
                held = (date.fromisoformat(data["day"]), int(data["limit"]))
            except (ValueError, KeyError, TypeError, InvalidOperation):
                log.warning("%s: unreadable scaling of account %s ignored", self.id, account_id)
                continue
            current = self._scaled.get(account_id)
            if current is None or current[0] < held[0]:
                self._scaled[account_id] = held

    # --- the rule -----------------------------------------------------------------------

    def evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        cfg = self.cfg(account_id)
        limit = self.limit(account_id)
        positions = self.ctx.state.get_all_positions(account_id)
        if isinstance(trigger, OrderTrigger | CheckTrigger) and cfg.count_orders:
            only = trigger.change.after if isinstance(trigger, OrderTrigger) else None
            if isinstance(trigger, OrderTrigger) and only is None:
                return []
            orders = entry_orders(self, account_id)
            cancel = over_limit_orders(self, account_id, positions, orders, cfg.count, limit, only)
            intents = cancel_intents(
                self, account_id, cancel, f"the account over {limit} contracts if it filled"
            )
            if isinstance(trigger, OrderTrigger):
                return intents
        elif isinstance(trigger, OrderTrigger):
            return []
        else:
            intents = []
        weight = self._weights(account_id, positions)
        total = exposure(positions, cfg.count, weight)
        if total <= limit:
            return intents
        reason = f"{fmt_count(total)} contracts open ({cfg.count}), limit {limit}"
        if cfg.action == "close_all":
            return [
                *intents,
                CloseAll(
                    rule=self.id, account_id=account_id, reason=reason, category=Category.CLOSE
                ),
            ]
        return intents + [
            ReducePosition(
                rule=self.id,
                account_id=account_id,
                reason=reason,
                category=self.category,
                contract_id=p.contract_id,
                target_size=p.size - cut,
            )
            for p, cut in reductions(positions, total - limit, cfg.count, weight)
        ]

    def status(self, account_id: int) -> RuleStatus:
        cfg = self.cfg(account_id)
        limit = self.limit(account_id)
        positions = self.ctx.state.get_all_positions(account_id)
        total = exposure(positions, cfg.count, self._weights(account_id, positions))
        detail = f"{cfg.count}, {cfg.action.replace('_', ' ')}"
        if cfg.scaling:
            detail += f", scaling plan: {limit} today"
        if cfg.count_orders:
            detail += ", working orders count"
        return RuleStatus(
            value=fmt_count(total),
            limit=str(limit),
            used=float(total / limit),
            detail=detail,
        )

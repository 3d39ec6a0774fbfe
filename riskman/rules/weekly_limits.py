"""RULE-017 weekly_limits: the trading week's P&L and trade count.

The trading week starts at Sunday's daily reset: it holds the trading days labelled Monday to
Sunday (a trading day is labelled by the date it ends on). Its P&L is the realized P&L (net of
fees) of its days, plus open P&L when `include_unrealized` (the default, as RULE-003).

- P&L at or below -`loss`, or at or above `profit`: close all, cancel all orders, lock until the
  week's first reset (Sunday's).
- More trades than `trades` this week: a cooldown until then (no new exposure; working entry
  orders cancelled; what is open stays). Trades are counted like RULE-006 counts them (an order
  that fills counts once, or with `count_trades_as: fills` every fill; riskman's own closes
  never count). The cooldown is held under its own
  name (`RULE-017/trades`) so a later loss can still set the hard lock.

The days of the week before today are read from the stored fills at start (and carried over at
each reset from memory, since the day's last fills may still be on their way to disk); today's
come from the live P&L tracker and trade counter.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from riskman.core.intents import Category, Intent
from riskman.core.locks import Unlock
from riskman.core.rules import (
    CheckTrigger,
    PositionTrigger,
    QuoteTrigger,
    Rule,
    RuleContext,
    TradeTrigger,
    Trigger,
    money,
)
from riskman.core.views import RuleStatus

log = logging.getLogger(__name__)

TRADES_LOCK = "RULE-017/trades"


def week_start(day: date) -> date:
    """The Monday of the trading week holding trading day `day`."""
    return day - timedelta(days=day.weekday())


class WeeklyLimits(Rule):
    id = "RULE-017"
    key = "weekly_limits"
    title = "Weekly limits"
    category = Category.LOCKOUT
    triggers = frozenset({TradeTrigger, QuoteTrigger, PositionTrigger, CheckTrigger})
    waits_for_fills = True

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        self._day: date | None = None
        """The trading day `_prior` is for."""
        self._prior: dict[int, tuple[Decimal, int, int]] = {}
        """Per account: realized P&L, trades and fills of the week's days before `_day`."""
        self._counted: dict[int, tuple[int, int]] = {}
        """Per account: trades and fills counted today (carried into `_prior` at the reset)."""

    # --- rule API ------------------------------------------------------------------------

    async def restore(self) -> None:
        if self._day is None:
            await self._load(self.ctx.trading_day())
        for account in self.ctx.state.accounts():
            self._counted.setdefault(account.id, self._today(account.id))

    async def on_reset(self, ended: date, at: datetime) -> None:
        today = ended + timedelta(days=1)
        if self._day != ended:
            # Not running through the day that ended (a catch-up at start): the disk has it.
            await self._load(today)
            return
        carried: dict[int, tuple[Decimal, int, int]] = {}
        if week_start(today) == week_start(ended):
            accounts = set(self._prior) | set(self._counted)
            accounts |= {a.id for a in self.ctx.state.accounts()}
            for account_id in accounts:
                pnl, trades, fills = self._prior.get(account_id, (Decimal(0), 0, 0))
                pnl += self.ctx.pnl.get_daily_realized_pnl(account_id, ended)
                counted = self._counted.get(account_id, (0, 0))
                carried[account_id] = (pnl, trades + counted[0], fills + counted[1])
        self._prior = carried
        self._counted = {}
        self._day = today

    def evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        cfg = self.cfg(account_id)
        if isinstance(trigger, TradeTrigger) and trigger.effect.is_new:
            self._counted[account_id] = self._today(account_id)
        intents: list[Intent] = []
        if cfg.trades is not None and isinstance(trigger, TradeTrigger):
            trades = self.trades(account_id)
            if trades > cfg.trades and not self._held(account_id, TRADES_LOCK):
                noun = "fills" if cfg.count_trades_as == "fills" else "trades"
                why = f"{trades} {noun} this week (limit {cfg.trades})"
                intents += [
                    _renamed(intent, TRADES_LOCK)
                    for intent in self.cooldown(account_id, why, self.week_end())
                ]
        if (cfg.loss is None and cfg.profit is None) or self._held(account_id, self.id):
            return intents
        if isinstance(trigger, QuoteTrigger) and not cfg.include_unrealized:
            return intents
        value, _ = self.pnl(account_id)
        reason = None
        if cfg.loss is not None and value <= -cfg.loss:
            reason = f"weekly P&L {money(value)} reached the {money(-cfg.loss)} limit"
        elif cfg.profit is not None and value >= cfg.profit:
            reason = f"weekly P&L {money(value)} reached the {money(cfg.profit)} target"
        if reason is not None:
            intents += self.lock_and_flatten(account_id, reason, self.week_end(), Unlock.RESET)
        return intents

    def status(self, account_id: int) -> RuleStatus:
        cfg = self.cfg(account_id)
        value, complete = self.pnl(account_id)
        trades = self.trades(account_id)
        limits = []
        used = []
        if cfg.loss is not None:
            limits.append(money(-cfg.loss))
            used.append(float(-value / cfg.loss))
        if cfg.profit is not None:
            limits.append(f"+{money(cfg.profit)}")
            used.append(float(value / cfg.profit))
        if cfg.trades is not None:
            limits.append(f"{cfg.trades} trades")
            used.append(trades / cfg.trades)
        count = f"{trades}/{cfg.trades}" if cfg.trades is not None else str(trades)
        return RuleStatus(
            value=f"{money(value)} · {count} trades",
            limit=" · ".join(limits),
            used=max(0.0, *used) if used else None,
            detail=f"week since {week_start(self.ctx.trading_day()).isoformat()}",
            stale=not complete,
        )

    # --- queries -------------------------------------------------------------------------

    def week_end(self) -> datetime:
        """The week's first reset: Sunday's, which ends the week's last trading day."""
        sunday = week_start(self.ctx.trading_day()) + timedelta(days=6)
        return self.ctx.reset_schedule.reset_at(sunday)

    def pnl(self, account_id: int) -> tuple[Decimal, bool]:
        """The week's P&L as this rule counts it, and whether every open position was priced."""
        value = self._before_today(account_id)[0]
        value += self.ctx.pnl.get_daily_realized_pnl(account_id)
        if not self.cfg(account_id).include_unrealized:
            return value, True
        open_pnl = self.ctx.pnl.calculate_unrealized_pnl(account_id)
        return value + open_pnl.total, open_pnl.complete

    def trades(self, account_id: int) -> int:
        """Trades of the week (fills, with `count_trades_as: fills`)."""
        _, trades, fills = self._before_today(account_id)
        orders_today, fills_today = self._today(account_id)
        if self.cfg(account_id).count_trades_as == "fills":
            return fills + fills_today
        return trades + orders_today

    # --- internals -----------------------------------------------------------------------

    def _today(self, account_id: int) -> tuple[int, int]:
        counter = self.ctx.counter
        return (
            counter.get_trade_counts(account_id).session,
            counter.get_fill_counts(account_id).session,
        )

    def _before_today(self, account_id: int) -> tuple[Decimal, int, int]:
        if self._day != self.ctx.trading_day():
            return Decimal(0), 0, 0  # not loaded yet, or the reset is running
        return self._prior.get(account_id, (Decimal(0), 0, 0))

    def _held(self, account_id: int, name: str) -> bool:
        return any(
            lock.rule == name and lock.symbol is None
            for lock in self.ctx.lockouts.get_lockout_info(account_id)
        )

    async def _load(self, today: date) -> None:
        monday = week_start(today)
        counts = await self.ctx.counter.trades_between(monday, today)
        realized = await self.ctx.pnl.realized_between(monday, today)
        prior: dict[int, tuple[Decimal, int, int]] = {
            account_id: (realized.get(account_id, Decimal(0)), *counts.get(account_id, (0, 0)))
            for account_id in realized.keys() | counts.keys()
        }
        self._prior = prior
        self._day = today


def _renamed(intent: Intent, rule: str) -> Intent:
    return replace(intent, rule=rule)

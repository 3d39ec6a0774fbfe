"""RULE-016 trailing_daily_loss: TopstepX's trailing Personal Daily Loss Limit.

floor = the day's highest balance - `limit`. With `trail: realized` the high is the highest
account balance seen this trading day; with `trail: equity` it is the highest balance + open
P&L. The high only rises during the day (so does the floor) and starts again from the balance at
the daily reset. Balance + open P&L at or below the floor closes everything, cancels the orders
and locks the account until the daily reset.

The high of a day starts at the first balance riskman sees that day (the balance at the reset,
or at start-up for an account riskman was not watching). It is kept per account in
`rule_state` (written in the background), so a restart in the middle of the day keeps it.

The balance is the one as of the fills seen (`StateManager.balance`): a balance update that
arrives before the trade and the position update of its fill waits for them, so a closing gain
or loss is never in the balance and in the open P&L at once, and the rule waits while a
position update runs ahead of its fill (`waits_for_fills`).

Open P&L counts only the positions with a fresh quote, and the high is not raised from an
incomplete one: a missing or stale quote never moves the floor or breaches by itself.
"""

from __future__ import annotations

import json
import logging
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from riskman.core.intents import Category, Intent
from riskman.core.locks import Unlock
from riskman.core.rules import (
    AccountTrigger,
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

if TYPE_CHECKING:
    from riskman.config import TrailingDailyLossConfig

log = logging.getLogger(__name__)


class TrailingDailyLoss(Rule):
    id = "RULE-016"
    key = "trailing_daily_loss"
    title = "Trailing daily loss"
    category = Category.LOCKOUT
    triggers = frozenset(
        {AccountTrigger, QuoteTrigger, PositionTrigger, TradeTrigger, CheckTrigger}
    )
    waits_for_fills = True

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        self._high: dict[int, tuple[date, Decimal]] = {}
        """The trading day and its highest balance (or equity), per account."""

    # --- rule API ------------------------------------------------------------------------

    async def restore(self) -> None:
        for account_id, payload in (await self.ctx.load_rule_state(self.id)).items():
            try:
                data = json.loads(payload)
                day = date.fromisoformat(data["day"])
                high = Decimal(data["high"])
            except (ValueError, KeyError, TypeError, InvalidOperation):
                log.warning("%s: unreadable day high for account %s ignored", self.id, account_id)
                continue
            self._high[account_id] = (day, high)

    async def on_reset(self, ended: date, at: datetime) -> None:
        # The new day's high starts from the balance at the reset (set on the next look).
        self._high = {k: v for k, v in self._high.items() if v[0] > ended}

    def evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        if self.locked_by_me(account_id):
            return []
        equity = self._equity(account_id)
        if equity is None:
            return []
        value, complete = equity
        self._raise_high(account_id, value, complete)
        floor = self.floor(account_id)
        if floor is None or value > floor:
            return []
        cfg: TrailingDailyLossConfig = self.cfg(account_id)
        reason = (
            f"balance + open P&L {money(value)} reached the trailing daily loss floor "
            f"{money(floor)} ({money(cfg.limit)} below the day's high)"
        )
        return self.lock_and_flatten(account_id, reason, self.ctx.next_reset(), Unlock.RESET)

    def status(self, account_id: int) -> RuleStatus:
        cfg: TrailingDailyLossConfig = self.cfg(account_id)
        equity = self._equity(account_id)
        floor = self.floor(account_id)
        if equity is None or floor is None:
            return RuleStatus(value="no balance yet", limit=f"{money(cfg.limit)} trailing")
        value, complete = equity
        high = floor + cfg.limit
        used = float(max(Decimal(0), (high - value) / cfg.limit))
        return RuleStatus(
            value=f"balance+open {money(value)} vs floor {money(floor)} (used {used:.0%})",
            limit=money(floor),
            used=used,
            detail=f"day high {money(high)} ({cfg.trail}), limit {money(cfg.limit)}",
            stale=not complete,
        )

    # --- queries -------------------------------------------------------------------------

    def high(self, account_id: int) -> Decimal | None:
        """Today's highest balance (or equity), None before riskman saw a balance today."""
        held = self._high.get(account_id)
        if held is None or held[0] != self.ctx.trading_day():
            return None
        return held[1]

    def floor(self, account_id: int) -> Decimal | None:
        high = self.high(account_id)
        if high is None:
            return None
        cfg: TrailingDailyLossConfig = self.cfg(account_id)
        return high - cfg.limit

    # --- internals -----------------------------------------------------------------------

    def _equity(self, account_id: int) -> tuple[Decimal, bool] | None:
        """Balance (as of the fills seen) + open P&L, and whether every position was priced."""
        balance = self.ctx.state.balance(account_id)
        if balance is None:
            return None
        open_pnl = self.ctx.pnl.calculate_unrealized_pnl(account_id)
        return balance + open_pnl.total, open_pnl.complete

    def _raise_high(self, account_id: int, equity: Decimal, complete: bool) -> None:
        cfg: TrailingDailyLossConfig = self.cfg(account_id)
        if cfg.trail == "realized":
            balance = self.ctx.state.balance(account_id)
            assert balance is not None
            candidate = balance
        elif complete:
            candidate = equity
        else:
            return
        today = self.ctx.trading_day()
        held = self._high.get(account_id)
        if held is not None and held[0] == today and held[1] >= candidate:
            return
        self._high[account_id] = (today, candidate)
        payload = json.dumps({"day": today.isoformat(), "high": str(candidate)})
        self.ctx.defer_rule_state(self.id, account_id, payload)

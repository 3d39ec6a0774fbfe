"""RULE-014 max_loss_limit: Topstep's trailing Maximum Loss Limit.

floor = min(EOD high - drawdown, starting_balance). The EOD high starts at the starting balance
(or the configured `eod_high`, for an account that traded before riskman watched it) and is
raised to the account balance at each daily reset only, never intraday; it never goes down, so
neither does the floor, and the floor stops trailing at the starting balance.

Balance + open P&L at or below the floor closes everything, cancels the orders and locks the
account until an admin clears it (on Topstep this fails the account). Open P&L counts only the
positions with a fresh quote: a missing or stale quote never breaches by itself. The balance is
the one as of the fills seen (`StateManager.balance`): exact whatever order a fill's trade,
position and balance updates arrive in.

The EOD high is persisted per account in `rule_state`.
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
    from riskman.config import MaxLossLimitConfig

log = logging.getLogger(__name__)


class MaxLossLimit(Rule):
    id = "RULE-014"
    key = "max_loss_limit"
    title = "Maximum loss limit"
    category = Category.LOCKOUT
    triggers = frozenset(
        {AccountTrigger, QuoteTrigger, PositionTrigger, TradeTrigger, CheckTrigger}
    )
    waits_for_fills = True

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        self._eod_high: dict[int, Decimal] = {}
        """Highest balance seen at a daily reset, per account (persisted)."""
        self._loaded = False

    # --- rule API ------------------------------------------------------------------------

    async def restore(self) -> None:
        await self._load()

    async def on_reset(self, ended: date, at: datetime) -> None:
        # A reset missed while riskman was down is caught up before `restore` runs: load first,
        # or the stored high would be overwritten by a lower one.
        await self._load()
        accounts = {a.id for a in self.ctx.state.accounts()}
        for account_id in sorted(accounts):
            account = self.ctx.state.get_account(account_id)
            # Tracked even while the rule is off: Topstep's floor trails regardless, and a rule
            # switched on later must start from the real EOD high.
            if account is None:
                continue
            high = self.eod_high(account_id)
            if account.balance > high:
                self._eod_high[account_id] = account.balance
                payload = json.dumps({"eod_high": str(account.balance), "day": ended.isoformat()})
                await self.ctx.save_rule_state(self.id, account_id, payload)
                log.info(
                    "%s account=%s EOD high %s -> %s (floor %s)",
                    self.id,
                    account_id,
                    high,
                    account.balance,
                    self.floor(account_id),
                )

    def evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        if self.locked_by_me(account_id):
            return []
        equity = self._equity(account_id)
        if equity is None:
            return []
        value, _ = equity
        floor = self.floor(account_id)
        if value > floor:
            return []
        reason = f"balance + open P&L {money(value)} reached the maximum loss limit {money(floor)}"
        return self.lock_and_flatten(account_id, reason, None, Unlock.ADMIN)

    def status(self, account_id: int) -> RuleStatus:
        cfg = self.cfg(account_id)
        floor = self.floor(account_id)
        high = self.eod_high(account_id)
        detail = f"EOD high {money(high)}, drawdown {money(cfg.drawdown)}"
        equity = self._equity(account_id)
        if equity is None:
            return RuleStatus(value="no balance yet", limit=money(floor), detail=detail)
        value, stale = equity
        tomorrow = self.tomorrow_floor(account_id)
        if tomorrow is not None:
            detail = f"tomorrow's floor {money(tomorrow)} if the day ended now; {detail}"
        room = high - floor
        used = float(max(Decimal(0), (high - value) / room)) if room > 0 else 0.0
        return RuleStatus(
            value=f"{money(value - floor)} above the floor {money(floor)} "
            f"(balance+open {money(value)}, used {used:.0%})",
            limit=money(floor),
            used=used,
            detail=detail,
            stale=stale,
        )

    # --- queries -------------------------------------------------------------------------

    def eod_high(self, account_id: int) -> Decimal:
        """The highest end-of-day balance that counts for the floor."""
        cfg: MaxLossLimitConfig = self.cfg(account_id)
        return max(
            cfg.starting_balance,
            cfg.eod_high or Decimal(0),
            self._eod_high.get(account_id, Decimal(0)),
        )

    def tomorrow_floor(self, account_id: int) -> Decimal | None:
        """The floor after the next daily reset if the day ended now (the balance as the new
        end-of-day high, if higher)."""
        account = self.ctx.state.get_account(account_id)
        if account is None:
            return None
        cfg: MaxLossLimitConfig = self.cfg(account_id)
        high = max(self.eod_high(account_id), account.balance)
        return min(high - cfg.drawdown, cfg.starting_balance)

    def floor(self, account_id: int) -> Decimal:
        cfg: MaxLossLimitConfig = self.cfg(account_id)
        return min(self.eod_high(account_id) - cfg.drawdown, cfg.starting_balance)

    # --- internals -----------------------------------------------------------------------

    def _equity(self, account_id: int) -> tuple[Decimal, bool] | None:
        """Balance + open P&L, and whether a stale quote left a position out (None: no
        balance known yet)."""
        # The balance as of the fills seen: a balance update that arrives before the trade and
        # the position update of its fill waits for them (MOD-009), so a closing loss is never
        # counted in the balance and in the open P&L at once.
        balance = self.ctx.state.balance(account_id)
        if balance is None:
            return None
        open_pnl = self.ctx.pnl.calculate_unrealized_pnl(account_id)
        return balance + open_pnl.total, not open_pnl.complete

    async def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for account_id, payload in (await self.ctx.load_rule_state(self.id)).items():
            try:
                high = Decimal(json.loads(payload)["eod_high"])
            except (ValueError, KeyError, TypeError, InvalidOperation):
                log.warning("%s: unreadable EOD high for account %s ignored", self.id, account_id)
                continue
            current = self._eod_high.get(account_id, Decimal(0))
            self._eod_high[account_id] = max(current, high)

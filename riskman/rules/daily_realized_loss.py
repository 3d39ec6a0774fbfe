"""RULE-003 daily_realized_loss: today's realized P&L (net of fees), plus open P&L when
`include_unrealized`, at or below -limit: close all, cancel all orders, lock until the reset.
"""

from __future__ import annotations

from decimal import Decimal

from riskman.core.intents import Category, Intent
from riskman.core.locks import Unlock
from riskman.core.rules import (
    CheckTrigger,
    PositionTrigger,
    QuoteTrigger,
    Rule,
    TradeTrigger,
    Trigger,
    money,
)
from riskman.core.views import RuleStatus


class DailyRealizedLoss(Rule):
    id = "RULE-003"
    key = "daily_realized_loss"
    title = "Daily loss limit"
    category = Category.LOCKOUT
    triggers = frozenset({TradeTrigger, QuoteTrigger, PositionTrigger, CheckTrigger})
    waits_for_fills = True

    def _value(self, account_id: int) -> tuple[Decimal, bool]:
        """Today's P&L as this rule counts it, and whether a stale quote left some out."""
        cfg = self.cfg(account_id)
        value = self.ctx.pnl.get_daily_realized_pnl(account_id)
        if not cfg.include_unrealized:
            return value, False
        open_pnl = self.ctx.pnl.calculate_unrealized_pnl(account_id)
        return value + open_pnl.total, not open_pnl.complete

    def evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        cfg = self.cfg(account_id)
        if isinstance(trigger, QuoteTrigger) and not cfg.include_unrealized:
            return []
        if self.locked_by_me(account_id):
            return []
        value, _ = self._value(account_id)
        if value > -cfg.limit:
            return []
        what = "P&L" if cfg.include_unrealized else "realized P&L"
        reason = f"daily {what} {money(value)} reached the {money(-cfg.limit)} limit"
        return self.lock_and_flatten(account_id, reason, self.ctx.next_reset(), Unlock.RESET)

    def status(self, account_id: int) -> RuleStatus:
        cfg = self.cfg(account_id)
        value, stale = self._value(account_id)
        return RuleStatus(
            value=money(value),
            limit=money(-cfg.limit),
            used=max(0.0, float(-value / cfg.limit)),
            detail="realized + open" if cfg.include_unrealized else "realized",
            stale=stale,
        )

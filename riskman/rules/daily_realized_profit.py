"""RULE-013 daily_realized_profit: today's realized P&L (net of fees) at or above the target:
close all, cancel all orders, lock until the daily reset ("daily profit target reached").

Realized only: open P&L never counts, so a winning open position cannot trigger it by itself.
"""

from __future__ import annotations

from decimal import Decimal

from riskman.core.intents import Category, Intent
from riskman.core.locks import Unlock
from riskman.core.rules import CheckTrigger, Rule, TradeTrigger, Trigger, money
from riskman.core.views import RuleStatus


class DailyRealizedProfit(Rule):
    id = "RULE-013"
    key = "daily_realized_profit"
    title = "Daily profit target"
    category = Category.LOCKOUT
    triggers = frozenset({TradeTrigger, CheckTrigger})

    def evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        if self.locked_by_me(account_id):
            return []
        target: Decimal = self.cfg(account_id).target
        realized = self.ctx.pnl.get_daily_realized_pnl(account_id)
        if realized < target:
            return []
        reason = (
            f"daily profit target reached: realized P&L {money(realized)} (target {money(target)})"
        )
        return self.lock_and_flatten(account_id, reason, self.ctx.next_reset(), Unlock.RESET)

    def status(self, account_id: int) -> RuleStatus:
        target: Decimal = self.cfg(account_id).target
        realized = self.ctx.pnl.get_daily_realized_pnl(account_id)
        return RuleStatus(
            value=money(realized),
            limit=money(target),
            used=max(0.0, float(realized / target)),
            detail="realized, net of fees",
        )

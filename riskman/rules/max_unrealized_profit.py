"""RULE-005 max_unrealized_profit: one position whose open P&L reaches the target is closed
(the profit is taken).

Same marking as RULE-004: the price the position could be closed at, and never a close on a
missing or stale quote.
"""

from __future__ import annotations

from decimal import Decimal

from riskman.core.intents import Category, ClosePosition, Intent
from riskman.core.rules import CheckTrigger, PositionTrigger, QuoteTrigger, Rule, Trigger, money
from riskman.core.views import RuleStatus
from riskman.rules.daily_unrealized_loss import describe, positions_for, priced


class MaxUnrealizedProfit(Rule):
    id = "RULE-005"
    key = "max_unrealized_profit"
    title = "Take profit per position"
    category = Category.CLOSE
    triggers = frozenset({QuoteTrigger, PositionTrigger, CheckTrigger})

    def evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        target: Decimal = self.cfg(account_id).target
        values, _ = priced(self.ctx, positions_for(self.ctx, account_id, trigger))
        return [
            ClosePosition(
                rule=self.id,
                account_id=account_id,
                reason=(
                    f"take profit: {describe(state)} open P&L {money(value)} reached the "
                    f"{money(target)} target"
                ),
                category=self.category,
                contract_id=state.contract_id,
            )
            for state, value in values
            if value >= target
        ]

    def status(self, account_id: int) -> RuleStatus:
        target: Decimal = self.cfg(account_id).target
        positions = self.ctx.state.get_all_positions(account_id)
        values, stale = priced(self.ctx, positions)
        if not values:
            value = "flat" if not positions else "no quote"
            return RuleStatus(value=value, limit=money(target), used=0.0, stale=stale)
        state, best = max(values, key=lambda item: item[1])
        return RuleStatus(
            value=money(best),
            limit=money(target),
            used=max(0.0, float(best / target)),
            detail=f"best: {describe(state)}",
            stale=stale,
        )

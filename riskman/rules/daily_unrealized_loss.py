"""RULE-004 daily_unrealized_loss: one position whose open P&L is at or below -limit is closed.

Open P&L is marked at the price the position could be closed at (bid for a long, ask for a
short). Without a fresh quote a position's P&L is unknown: it is never closed on that alone,
and the status says the value is stale.
"""

from __future__ import annotations

from decimal import Decimal

from riskman.core.facts import PositionState
from riskman.core.intents import Category, ClosePosition, Intent
from riskman.core.rules import (
    CheckTrigger,
    PositionTrigger,
    QuoteTrigger,
    Rule,
    RuleContext,
    Trigger,
    money,
)
from riskman.core.views import RuleStatus
from riskman.symbols import display_symbol


def positions_for(ctx: RuleContext, account_id: int, trigger: Trigger) -> list[PositionState]:
    """The positions an event can have changed the open P&L of (all of them on a check)."""
    if isinstance(trigger, QuoteTrigger):
        contract_id = trigger.contract_id
    elif isinstance(trigger, PositionTrigger):
        after = trigger.change.after
        if after is None:
            return []
        contract_id = after.contract_id
    else:
        return ctx.state.get_all_positions(account_id)
    state = ctx.state.get_position(account_id, contract_id)
    return [] if state is None else [state]


def priced(
    ctx: RuleContext, positions: list[PositionState]
) -> tuple[list[tuple[PositionState, Decimal]], bool]:
    """(position, open P&L) for the positions with a fresh quote; True if one had none."""
    result = []
    stale = False
    for state in positions:
        value = ctx.pnl.position_pnl(state)
        if value is None:
            stale = True
        else:
            result.append((state, value))
    return result, stale


def describe(state: PositionState) -> str:
    side = "long" if state.sign > 0 else "short"
    return f"{display_symbol(state.root)} {side} {state.size}"


class DailyUnrealizedLoss(Rule):
    id = "RULE-004"
    key = "daily_unrealized_loss"
    title = "Max loss per position"
    category = Category.CLOSE
    triggers = frozenset({QuoteTrigger, PositionTrigger, CheckTrigger})

    def evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        limit: Decimal = self.cfg(account_id).limit
        values, _ = priced(self.ctx, positions_for(self.ctx, account_id, trigger))
        # No lock to remember: MOD-001 drops a close already in flight, and once the position
        # is gone nothing triggers again.
        return [
            ClosePosition(
                rule=self.id,
                account_id=account_id,
                reason=(
                    f"{describe(state)} open P&L {money(value)} reached the {money(-limit)} limit"
                ),
                category=self.category,
                contract_id=state.contract_id,
            )
            for state, value in values
            if value <= -limit
        ]

    def status(self, account_id: int) -> RuleStatus:
        limit: Decimal = self.cfg(account_id).limit
        positions = self.ctx.state.get_all_positions(account_id)
        values, stale = priced(self.ctx, positions)
        if not values:
            value = "flat" if not positions else "no quote"
            return RuleStatus(value=value, limit=money(-limit), used=0.0, stale=stale)
        state, worst = min(values, key=lambda item: item[1])
        return RuleStatus(
            value=money(worst),
            limit=money(-limit),
            used=max(0.0, float(-worst / limit)),
            detail=f"worst: {describe(state)}",
            stale=stale,
        )

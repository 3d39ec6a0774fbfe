"""RULE-007 cooldown_after_loss: one closing fill that loses at least a tier's `loss` (net of
its fees) starts that tier's cooldown; the largest tier reached wins.

The cooldown runs from the fill's own timestamp, so a losing fill replayed after a reconnect
only cools down for what is left of it (nothing if it is already over). Each fill is judged
once: MOD-005 never reports the same fill as new twice. Several fills of one losing order are
judged one by one, as the spec says ("one closing fill").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from riskman.config import LossTier
from riskman.core.intents import Category, Intent
from riskman.core.rules import Rule, RuleContext, TradeTrigger, Trigger, money
from riskman.core.views import RuleStatus
from riskman.rules.trade_frequency_limit import cooldown_end, fmt_duration, held_until
from riskman.symbols import display_symbol, root_of

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class LosingFill:
    """The last losing closing fill of the day, for the Rules screen."""

    at: datetime
    net: Decimal
    contract_id: str
    day: date


def tier_reached(tiers: list[LossTier], net: Decimal) -> LossTier | None:
    """The largest tier whose loss the fill's net P&L reaches (tiers are sorted by loss)."""
    reached = [tier for tier in tiers if net <= -tier.loss]
    return reached[-1] if reached else None


class CooldownAfterLoss(Rule):
    id = "RULE-007"
    key = "cooldown_after_loss"
    title = "Cooldown after a loss"
    category = Category.COOLDOWN
    triggers = frozenset({TradeTrigger})

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        self._last: dict[int, LosingFill] = {}

    async def restore(self) -> None:
        # The fills are the truth (MOD-005 stores every one): find today's last losing one.
        day = self.ctx.trading_day()
        for fill in await self.ctx.pnl.closing_fills(day):
            if fill.net < ZERO:
                self._last[fill.account_id] = LosingFill(fill.at, fill.net, fill.contract_id, day)

    async def on_reset(self, ended: date, at: datetime) -> None:
        self._last = {k: v for k, v in self._last.items() if v.day > ended}

    def evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        if not isinstance(trigger, TradeTrigger):
            return []
        effect = trigger.effect
        trade = effect.trade
        if not effect.is_new or trade.voided or not trade.is_closing:
            return []
        net = trade.net_pnl
        if net >= ZERO:
            return []
        last = self._last.get(account_id)
        if last is None or trade.creation_timestamp >= last.at:
            self._last[account_id] = LosingFill(
                trade.creation_timestamp, net, trade.contract_id, effect.day
            )
        tier = tier_reached(self.cfg(account_id).tiers, net)
        if tier is None:
            return []
        end = cooldown_end(self.ctx, trade.creation_timestamp, tier.cooldown)
        if end <= self.ctx.now():
            return []  # an old fill replayed: its cooldown is already over
        held = held_until(self, account_id)
        if held is not None and held >= end:
            return []
        symbol = display_symbol(root_of(trade.contract_id))
        reason = (
            f"{symbol} fill lost {money(-net)} net of fees (tier {money(tier.loss)}): "
            f"cooldown {fmt_duration(tier.cooldown)}"
        )
        return self.cooldown(account_id, reason, end)

    def status(self, account_id: int) -> RuleStatus:
        tiers: list[LossTier] = self.cfg(account_id).tiers
        limit = " · ".join(
            f"{money(t.loss)} {fmt_duration(t.cooldown).removeprefix('for ')}" for t in tiers
        )
        last = self._last.get(account_id)
        if last is None or last.day != self.ctx.trading_day():
            return RuleStatus(value="no losing fill today", limit=limit, used=0.0)
        tier = tier_reached(tiers, last.net)
        local = last.at.astimezone(self.ctx.settings.zone)
        when = f"{display_symbol(root_of(last.contract_id))} at {local:%H:%M:%S}"
        if tier is None:
            detail = f"{when}, below the first tier"
        else:
            detail = f"{when}, tier {money(tier.loss)}: cooldown {fmt_duration(tier.cooldown)}"
        return RuleStatus(
            value=money(last.net),
            limit=limit,
            used=float(-last.net / tiers[0].loss),
            detail=detail,
        )

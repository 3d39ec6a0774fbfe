"""RULE-010 auth_loss_guard: when the gateway says an account cannot trade (`canTrade: false`),
close everything, cancel every order and lock the account until it says `canTrade: true`.

The lock is set once and not again while it holds. Only a fresh report from the gateway ends
it: a check (start-up, config change) acts on the last known account state to lock, but never
unlocks on it, because the account row kept over a restart may be older than the lock.
Closing can fail while the gateway refuses to trade; MOD-001 retries and logs it.
"""

from __future__ import annotations

from riskman.core.intents import Category, ClearLock, Intent
from riskman.core.locks import Unlock
from riskman.core.models import Account
from riskman.core.rules import AccountTrigger, CheckTrigger, Rule, Trigger
from riskman.core.views import RuleStatus

LOCK_REASON = "the gateway reports this account cannot trade (canTrade false)"
CLEAR_REASON = "the gateway reports this account can trade again (canTrade true)"


class AuthLossGuard(Rule):
    id = "RULE-010"
    key = "auth_loss_guard"
    title = "Gateway trading permission"
    category = Category.LOCKOUT
    triggers = frozenset({AccountTrigger, CheckTrigger})

    def evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        account: Account | None
        if isinstance(trigger, AccountTrigger):
            account = trigger.after
        elif isinstance(trigger, CheckTrigger):
            account = self.ctx.state.get_account(account_id)
        else:
            return []
        if account is None:
            return []
        locked = self.locked_by_me(account_id)
        if not account.can_trade:
            if locked:
                return []
            return self.lock_and_flatten(account_id, LOCK_REASON, None, Unlock.CAN_TRADE)
        if locked and isinstance(trigger, AccountTrigger):
            return [
                ClearLock(
                    rule=self.id,
                    account_id=account_id,
                    reason=CLEAR_REASON,
                    category=self.category,
                )
            ]
        return []

    def status(self, account_id: int) -> RuleStatus:
        account = self.ctx.state.get_account(account_id)
        locked = self.locked_by_me(account_id)
        detail = "locked until the gateway allows trading" if locked else ""
        if account is None:
            return RuleStatus(value="unknown", limit="canTrade", detail=detail)
        value = "can trade" if account.can_trade else "cannot trade"
        return RuleStatus(
            value=value,
            limit="canTrade",
            used=0.0 if account.can_trade else 1.0,
            detail=detail,
        )

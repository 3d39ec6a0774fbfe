"""RULE-011 symbol_blocks: no position and no working order in a blocked symbol root.

`symbols` holds gateway roots (the config turns `ES` into `EP`); a contract matches on its exact
root, so blocking ES blocks `CON.F.US.EP.*` but not MES. A hit closes that symbol's positions,
cancels that symbol's orders and locks the symbol (`Unlock.CONFIG`): the lockout gate then
refuses anything new in it, and the engine clears the lock when the symbol leaves the list.
"""

from __future__ import annotations

from riskman.core.intents import CancelOrders, Category, ClosePosition, Intent, Lock
from riskman.core.locks import Unlock
from riskman.core.rules import CheckTrigger, OrderTrigger, PositionTrigger, Rule, Trigger
from riskman.core.views import RuleStatus
from riskman.symbols import display_symbol, root_of


class SymbolBlocks(Rule):
    id = "RULE-011"
    key = "symbol_blocks"
    title = "Blocked symbols"
    category = Category.LOCKOUT
    triggers = frozenset({PositionTrigger, OrderTrigger, CheckTrigger})

    def evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        blocked = set(self.cfg(account_id).symbols)
        if not blocked:
            return []
        hits: dict[str, str] = {}
        if isinstance(trigger, PositionTrigger):
            after = trigger.change.after
            if after is not None and after.root in blocked:
                hits[after.root] = "position"
        elif isinstance(trigger, OrderTrigger):
            order = trigger.change.after
            if order is not None and order.status.is_working:
                root = root_of(order.contract_id)
                if root in blocked:
                    hits[root] = "order"
        else:
            for order in self.ctx.state.get_all_orders(account_id):
                if order.status.is_working and root_of(order.contract_id) in blocked:
                    hits[root_of(order.contract_id)] = "order"
            for state in self.ctx.state.get_all_positions(account_id):
                if state.root in blocked:
                    hits[state.root] = "position"
        intents: list[Intent] = []
        for root, what in sorted(hits.items()):
            # Once the symbol is locked the gate handles anything new in it.
            if self.locked_by_me(account_id, root):
                continue
            intents += self._block(account_id, root, what)
        return intents

    def status(self, account_id: int) -> RuleStatus:
        blocked = list(self.cfg(account_id).symbols)
        names = ", ".join(display_symbol(root) for root in blocked) or "none"
        exposed = sum(
            1 for s in self.ctx.state.get_all_positions(account_id) if s.root in blocked
        ) + sum(
            1
            for o in self.ctx.state.get_all_orders(account_id)
            if root_of(o.contract_id) in blocked
        )
        locked = [
            display_symbol(lock.symbol)
            for lock in self.ctx.lockouts.get_lockout_info(account_id)
            if lock.rule == self.id and lock.symbol is not None
        ]
        return RuleStatus(
            value=f"{exposed} open in blocked symbols",
            limit=names,
            detail=f"locked: {', '.join(sorted(locked))}" if locked else "",
        )

    def _block(self, account_id: int, root: str, what: str) -> list[Intent]:
        reason = f"{display_symbol(root)} is a blocked symbol ({what} in it)"
        lock = Lock(
            rule=self.id,
            account_id=account_id,
            reason=reason,
            category=Category.LOCKOUT,
            until=None,
            unlock=Unlock.CONFIG,
            symbol=root,
        )
        closes = [
            ClosePosition(
                rule=self.id,
                account_id=account_id,
                reason=reason,
                category=Category.LOCKOUT,
                contract_id=state.contract_id,
            )
            for state in self.ctx.state.get_all_positions(account_id)
            if state.root == root
        ]
        cancel = CancelOrders(
            rule=self.id,
            account_id=account_id,
            reason=reason,
            category=Category.LOCKOUT,
            symbol=root,
        )
        return [lock, *closes, cancel]

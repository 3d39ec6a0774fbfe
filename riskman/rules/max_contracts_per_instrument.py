"""RULE-002 max_contracts_per_instrument: contracts in one symbol root above its limit are
reduced (newest first) or closed.

A root's contracts are net of its expiries (long MNQZ26 + short MNQH27 = 0) and weighted by
RULE-015. Its limit is `limits[root]`; a root not listed gets `default_limit` with
`unknown_symbol: allow` (no default = no limit) and is not allowed at all with `block`: every
position in it is closed, whatever the action and even when its expiries net to zero.

`count_orders`: an entry order that would take its symbol over the limit if it filled is
cancelled as soon as it is seen (see RULE-001); an order in a blocked symbol is left to the
position it would open.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from riskman.core.facts import PositionState
from riskman.core.intents import Category, ClosePosition, Intent, ReducePosition
from riskman.core.rules import CheckTrigger, OrderTrigger, PositionTrigger, Rule, Trigger
from riskman.core.views import RuleStatus
from riskman.rules.max_contracts import (
    cancel_intents,
    entry_orders,
    exposure,
    fmt_count,
    over_limit_orders,
    reductions,
)
from riskman.symbols import display_symbol, root_of

BLOCKED = 0


@dataclass(frozen=True, slots=True)
class RootExposure:
    root: str
    positions: list[PositionState]
    contracts: Decimal
    """Net of expiries, weighted."""
    limit: int | None
    """None: no limit; 0: the symbol is blocked."""
    weighted: bool

    @property
    def breached(self) -> bool:
        if self.limit is None:
            return False
        if self.limit == BLOCKED:
            return bool(self.positions)
        return self.contracts > self.limit


class MaxContractsPerInstrument(Rule):
    id = "RULE-002"
    key = "max_contracts_per_instrument"
    title = "Max contracts per symbol"
    category = Category.REDUCE
    triggers = frozenset({PositionTrigger, OrderTrigger, CheckTrigger})

    def _limit(self, account_id: int, root: str) -> int | None:
        cfg = self.cfg(account_id)
        if root in cfg.limits:
            return int(cfg.limits[root])
        if cfg.unknown_symbol == "block":
            return BLOCKED
        return None if cfg.default_limit is None else int(cfg.default_limit)

    def _roots(self, account_id: int, only: str | None = None) -> list[RootExposure]:
        by_root: dict[str, list[PositionState]] = defaultdict(list)
        for state in self.ctx.state.get_all_positions(account_id):
            if only is None or state.root == only:
                by_root[state.root].append(state)
        result = []
        for root, positions in sorted(by_root.items()):
            weight = {root: self.ctx.weight(account_id, root)}
            result.append(
                RootExposure(
                    root=root,
                    positions=positions,
                    contracts=exposure(positions, "net", weight),
                    limit=self._limit(account_id, root),
                    weighted=weight[root] != 1,
                )
            )
        return result

    def evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        # A position event only changes its own root's count; a check looks at every root.
        if isinstance(trigger, OrderTrigger):
            return self._orders(account_id, trigger)
        only = None
        if isinstance(trigger, PositionTrigger):
            changed = trigger.change.after or trigger.change.before
            if changed is None:
                return []
            only = changed.root
        intents: list[Intent] = []
        if isinstance(trigger, CheckTrigger):
            intents += self._orders(account_id, trigger)
        for item in self._roots(account_id, only):
            if item.breached and item.limit is not None:
                intents += self._enforce(account_id, item, item.limit)
        return intents

    def _orders(self, account_id: int, trigger: OrderTrigger | CheckTrigger) -> list[Intent]:
        """count_orders: cancel entry orders that would take their symbol over its limit."""
        if not self.cfg(account_id).count_orders:
            return []
        seen = trigger.change.after if isinstance(trigger, OrderTrigger) else None
        if isinstance(trigger, OrderTrigger) and seen is None:
            return []
        roots = (
            {root_of(seen.contract_id)}
            if seen is not None
            else {root_of(o.contract_id) for o in entry_orders(self, account_id)}
        )
        intents: list[Intent] = []
        for root in sorted(roots):
            limit = self._limit(account_id, root)
            if limit is None or limit == BLOCKED:
                continue
            positions = [p for p in self.ctx.state.get_all_positions(account_id) if p.root == root]
            orders = entry_orders(self, account_id, root)
            cancel = over_limit_orders(self, account_id, positions, orders, "net", limit, seen)
            why = f"{display_symbol(root)} over {limit} contracts if it filled"
            intents += cancel_intents(self, account_id, cancel, why)
        return intents

    def _enforce(self, account_id: int, item: RootExposure, limit: int) -> list[Intent]:
        cfg = self.cfg(account_id)
        symbol = display_symbol(item.root)
        if limit == BLOCKED or cfg.action == "close":
            if limit == BLOCKED:
                reason = f"{symbol} is not an allowed symbol (unknown symbols are blocked)"
            else:
                reason = self._reason(item)
            return [
                ClosePosition(
                    rule=self.id,
                    account_id=account_id,
                    reason=reason,
                    category=Category.CLOSE,
                    contract_id=p.contract_id,
                )
                for p in item.positions
            ]
        weight = {item.root: self.ctx.weight(account_id, item.root)}
        return [
            ReducePosition(
                rule=self.id,
                account_id=account_id,
                reason=self._reason(item),
                category=self.category,
                contract_id=p.contract_id,
                target_size=p.size - cut,
            )
            for p, cut in reductions(item.positions, item.contracts - limit, "net", weight)
        ]

    @staticmethod
    def _reason(item: RootExposure) -> str:
        weighted = " (weighted)" if item.weighted else ""
        return (
            f"{display_symbol(item.root)} {fmt_count(item.contracts)} contracts open{weighted}, "
            f"limit {item.limit}"
        )

    def status(self, account_id: int) -> RuleStatus:
        cfg = self.cfg(account_id)
        listed = [f"{display_symbol(root)} {n}" for root, n in sorted(cfg.limits.items())]
        if cfg.unknown_symbol == "block":
            listed.append("others blocked")
        elif cfg.default_limit is not None:
            listed.append(f"others {cfg.default_limit}")
        detail = ", ".join(listed or ["no limits"]) + f"; {cfg.action.replace('_', ' ')}"
        if cfg.count_orders:
            detail += "; working orders count"
        roots = self._roots(account_id)
        if not roots:
            return RuleStatus(value="0", limit="per symbol", used=0.0, detail=detail)
        worst = max(roots, key=_severity)
        value = f"{display_symbol(worst.root)} {fmt_count(worst.contracts)}"
        if worst.limit is None:
            return RuleStatus(value=value, limit="no limit", detail=detail)
        if worst.limit == BLOCKED:
            # Any position is over a blocked symbol's limit: no fraction means anything here.
            return RuleStatus(value=value, limit="blocked", detail=detail)
        return RuleStatus(
            value=value,
            limit=str(worst.limit),
            used=float(worst.contracts / worst.limit),
            detail=detail,
        )


def _severity(item: RootExposure) -> tuple[int, float]:
    """Blocked symbols held first, then the highest fraction of its limit."""
    if item.limit == BLOCKED:
        return (2, 0.0)
    if item.limit is None:
        return (0, 0.0)
    return (1, float(item.contracts / item.limit))

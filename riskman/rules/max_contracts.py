"""RULE-001 max_contracts: open contracts above the limit are reduced (newest first) or closed.

`count: net` nets the expiries of one symbol (long MNQZ26 + short MNQH27 = 0) and adds the
symbols up; `count: gross` adds every contract. With RULE-015 weights a micro counts 0.1.
"""

from __future__ import annotations

import math
from collections import defaultdict
from decimal import Decimal

from riskman.engine.intents import Category, CloseAll, Intent, ReducePosition
from riskman.engine.state import PositionState
from riskman.rules.base import (
    CheckTrigger,
    PositionTrigger,
    Rule,
    RuleStatus,
    Trigger,
)


def fmt_count(value: Decimal) -> str:
    return f"{value.normalize():f}" if value != value.to_integral_value() else str(int(value))


def exposure(positions: list[PositionState], count: str, weight: dict[str, Decimal]) -> Decimal:
    """Contracts open, weighted: net per symbol root (`net`) or every contract (`gross`)."""
    if count == "gross":
        return sum((Decimal(p.size) * weight[p.root] for p in positions), Decimal(0))
    by_root: dict[str, int] = defaultdict(int)
    for p in positions:
        by_root[p.root] += p.signed_size
    return sum((Decimal(abs(n)) * weight[root] for root, n in by_root.items()), Decimal(0))


def reductions(
    positions: list[PositionState],
    excess: Decimal,
    count: str,
    weight: dict[str, Decimal],
) -> list[tuple[PositionState, int]]:
    """(position, contracts to cut) to remove `excess`, newest positions first.

    In net mode only positions on the side of their symbol's net position reduce exposure,
    and never by more than that net.
    """
    net: dict[str, int] = defaultdict(int)
    for p in positions:
        net[p.root] += p.signed_size
    cuts = []
    for p in sorted(positions, key=lambda s: s.grown, reverse=True):
        if excess <= 0:
            break
        w = weight[p.root]
        room = p.size
        if count == "net":
            if net[p.root] == 0 or (net[p.root] > 0) != (p.sign > 0):
                continue
            room = min(room, abs(net[p.root]))
        cut = min(room, math.ceil(excess / w))
        if cut <= 0:
            continue
        cuts.append((p, cut))
        excess -= cut * w
        if count == "net":
            net[p.root] -= cut * p.sign
    return cuts


class MaxContracts(Rule):
    id = "RULE-001"
    key = "max_contracts"
    title = "Max contracts"
    category = Category.REDUCE
    triggers = frozenset({PositionTrigger, CheckTrigger})

    def _weights(self, account_id: int, positions: list[PositionState]) -> dict[str, Decimal]:
        return {p.root: self.ctx.weight(account_id, p.root) for p in positions}

    def evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        cfg = self.cfg(account_id)
        positions = self.ctx.state.get_all_positions(account_id)
        weight = self._weights(account_id, positions)
        total = exposure(positions, cfg.count, weight)
        if total <= cfg.limit:
            return []
        reason = f"{fmt_count(total)} contracts open ({cfg.count}), limit {cfg.limit}"
        if cfg.action == "close_all":
            return [
                CloseAll(
                    rule=self.id, account_id=account_id, reason=reason, category=Category.CLOSE
                )
            ]
        return [
            ReducePosition(
                rule=self.id,
                account_id=account_id,
                reason=reason,
                category=self.category,
                contract_id=p.contract_id,
                target_size=p.size - cut,
            )
            for p, cut in reductions(positions, total - cfg.limit, cfg.count, weight)
        ]

    def status(self, account_id: int) -> RuleStatus:
        cfg = self.cfg(account_id)
        positions = self.ctx.state.get_all_positions(account_id)
        total = exposure(positions, cfg.count, self._weights(account_id, positions))
        return RuleStatus(
            value=fmt_count(total),
            limit=str(cfg.limit),
            used=float(total / cfg.limit),
            detail=f"{cfg.count}, {cfg.action.replace('_', ' ')}",
        )

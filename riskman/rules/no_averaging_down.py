"""RULE-018 no_averaging_down: an addition filled at a price worse than the position's average
entry (below it for a long, above it for a short) is cut back to the size before it; the
position itself stays.

An addition at a worse price pulls the average entry towards it, so it shows in the position
update itself (the average falls for a long, rises for a short): the rule needs no fill, and
the order in which the gateway reports the fill and the position does not matter. The size
before the addition is kept until the cut has landed, so a second addition while the first cut
is on its way is cut too (and never below that size).
"""

from __future__ import annotations

from riskman.core.facts import PositionState
from riskman.core.intents import Category, Intent, ReducePosition
from riskman.core.rules import CheckTrigger, PositionTrigger, Rule, RuleContext, Trigger
from riskman.core.views import RuleStatus
from riskman.symbols import display_symbol

Key = tuple[int, str]


class NoAveragingDown(Rule):
    id = "RULE-018"
    key = "no_averaging_down"
    title = "No averaging down"
    category = Category.REDUCE
    triggers = frozenset({PositionTrigger, CheckTrigger})

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        self._baseline: dict[Key, tuple[int, int]] = {}
        """(account, contract) -> (side, size before the addition being cut back)."""
        self._cuts: dict[int, int] = {}

    def evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        if isinstance(trigger, PositionTrigger):
            change = trigger.change
            before, after = change.before, change.after
            if after is None:
                if before is not None:
                    self._baseline.pop((account_id, before.contract_id), None)
                return []
            key = (account_id, after.contract_id)
            if (
                before is not None
                and before.sign == after.sign
                and after.size > before.size
                and _worse(before, after)
            ):
                held = self._baseline.get(key)
                size = before.size
                if held is not None and held[0] == after.sign:
                    size = min(size, held[1])
                self._baseline[key] = (after.sign, size)
            return self._cut(self._positions(account_id, [after]))
        return self._cut(self._positions(account_id, self.ctx.state.get_all_positions(account_id)))

    def status(self, account_id: int) -> RuleStatus:
        cutting = [k for k in self._baseline if k[0] == account_id]
        return RuleStatus(
            value=f"{len(cutting)} addition(s) being cut back" if cutting else "no addition cut",
            limit="additions at a worse price than the average entry",
            used=None,
            detail=f"{self._cuts.get(account_id, 0)} cut back since start",
        )

    # --- internals -----------------------------------------------------------------------

    def _positions(
        self, account_id: int, positions: list[PositionState]
    ) -> list[tuple[PositionState, int]]:
        """The positions above the size they had before an averaging-down addition."""
        out = []
        for state in positions:
            key = (account_id, state.contract_id)
            held = self._baseline.get(key)
            if held is None:
                continue
            side, size = held
            if side != state.sign or state.size <= size:
                del self._baseline[key]  # the cut landed (or the position turned)
                continue
            out.append((state, size))
        return out

    def _cut(self, cuts: list[tuple[PositionState, int]]) -> list[Intent]:
        intents: list[Intent] = []
        for state, size in cuts:
            self._cuts[state.account_id] = self._cuts.get(state.account_id, 0) + 1
            side = "long" if state.sign > 0 else "short"
            reason = (
                f"{display_symbol(state.root)} {side} averaged down to "
                f"{state.position.average_price}: the addition is cut back to {size}"
            )
            intents.append(
                ReducePosition(
                    rule=self.id,
                    account_id=state.account_id,
                    reason=reason,
                    category=self.category,
                    contract_id=state.contract_id,
                    target_size=size,
                )
            )
        return intents


def _worse(before: PositionState, after: PositionState) -> bool:
    """Did the addition fill at a worse price than the average entry before it?"""
    old, new = before.position.average_price, after.position.average_price
    return new < old if after.sign > 0 else new > old

"""The risk rules of SPEC.md §3, one per module, in evaluation order."""

from __future__ import annotations

from riskman.rules.base import Rule
from riskman.rules.daily_realized_loss import DailyRealizedLoss
from riskman.rules.max_contracts import MaxContracts

ALL_RULES: tuple[type[Rule], ...] = (
    MaxContracts,
    DailyRealizedLoss,
)

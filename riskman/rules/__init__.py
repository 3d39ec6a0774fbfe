"""The risk rules of SPEC.md §3, one per module, in SPEC order."""

from __future__ import annotations

from riskman.core.rules import Rule
from riskman.rules.auth_loss_guard import AuthLossGuard
from riskman.rules.blackouts import Blackouts
from riskman.rules.cooldown_after_loss import CooldownAfterLoss
from riskman.rules.daily_realized_loss import DailyRealizedLoss
from riskman.rules.daily_realized_profit import DailyRealizedProfit
from riskman.rules.daily_unrealized_loss import DailyUnrealizedLoss
from riskman.rules.max_contracts import MaxContracts
from riskman.rules.max_contracts_per_instrument import MaxContractsPerInstrument
from riskman.rules.max_loss_limit import MaxLossLimit
from riskman.rules.max_unrealized_profit import MaxUnrealizedProfit
from riskman.rules.no_averaging_down import NoAveragingDown
from riskman.rules.no_flip import NoFlip
from riskman.rules.no_stop_loss_grace import NoStopLossGrace
from riskman.rules.session_block_outside import SessionBlockOutside
from riskman.rules.stop_discipline import StopDiscipline
from riskman.rules.symbol_blocks import SymbolBlocks
from riskman.rules.trade_frequency_limit import TradeFrequencyLimit
from riskman.rules.trade_management import TradeManagement
from riskman.rules.trailing_daily_loss import TrailingDailyLoss
from riskman.rules.weekly_limits import WeeklyLimits

ALL_RULES: tuple[type[Rule], ...] = (
    MaxContracts,
    MaxContractsPerInstrument,
    DailyRealizedLoss,
    DailyUnrealizedLoss,
    MaxUnrealizedProfit,
    TradeFrequencyLimit,
    CooldownAfterLoss,
    NoStopLossGrace,
    SessionBlockOutside,
    AuthLossGuard,
    SymbolBlocks,
    TradeManagement,
    DailyRealizedProfit,
    MaxLossLimit,
    TrailingDailyLoss,
    WeeklyLimits,
    NoAveragingDown,
    NoFlip,
    StopDiscipline,
    Blackouts,
)
"""RULE-015 (contract weights) is an option of RULE-001/002, not a rule of its own."""

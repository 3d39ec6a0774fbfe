"""What every rule is: a small class over the engine's queries that returns intents.

A rule never calls the gateway and keeps no copy of engine state. It is asked to `evaluate`
an account when one of its `triggers` happens, and answers with intents (close, reduce,
cancel, lock, cooldown...) that MOD-001 and MOD-002 carry out. `status` says where the account
stands against the rule, for the Rules screen.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from riskman.calendar import HolidayCalendar, ResetSchedule, SessionSchedule
from riskman.core.clock import Clock
from riskman.core.facts import OrderChange, PositionChange, TradeEffect
from riskman.core.intents import CancelOrders, Category, CloseAll, Intent, Lock
from riskman.core.locks import LockKind, Unlock
from riskman.core.models import Account
from riskman.core.queries import (
    ContractQueries,
    CounterQueries,
    LockQueries,
    PnlQueries,
    QuoteQueries,
    RuleStore,
    RuleTimers,
    StateQueries,
)
from riskman.core.views import RuleStatus, TradeCounts

if TYPE_CHECKING:
    from riskman.config import Rules, SessionBlockOutsideConfig, Settings


# --- triggers -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PositionTrigger:
    change: PositionChange


@dataclass(frozen=True, slots=True)
class OrderTrigger:
    change: OrderChange


@dataclass(frozen=True, slots=True)
class TradeTrigger:
    effect: TradeEffect
    counts: TradeCounts | None
    """Counts after this fill, when it was a new trade for the counter."""


@dataclass(frozen=True, slots=True)
class QuoteTrigger:
    contract_id: str


@dataclass(frozen=True, slots=True)
class AccountTrigger:
    before: Account | None
    after: Account


@dataclass(frozen=True, slots=True)
class TimerTrigger:
    name: str


@dataclass(frozen=True, slots=True)
class CheckTrigger:
    """Evaluate everything: after start-up, a reconnect, a config change or a reset."""

    reason: str = "check"


Trigger = (
    PositionTrigger
    | OrderTrigger
    | TradeTrigger
    | QuoteTrigger
    | AccountTrigger
    | TimerTrigger
    | CheckTrigger
)


# --- context --------------------------------------------------------------------------------


class RuleContext:
    """Read access to the engine for rules, plus timers and per-rule persistent state."""

    def __init__(
        self,
        *,
        settings: Callable[[], Settings],
        clock: Clock,
        store: RuleStore,
        state: StateQueries,
        pnl: PnlQueries,
        quotes: QuoteQueries,
        contracts: ContractQueries,
        counter: CounterQueries,
        lockouts: LockQueries,
        timers: RuleTimers,
        reset_schedule: Callable[[], ResetSchedule],
        calendar: Callable[[], HolidayCalendar],
        fire_timer: Callable[[str, int, str], None],
    ) -> None:
        self._settings = settings
        self.clock = clock
        self._store = store
        self.state = state
        self.pnl = pnl
        self.quotes = quotes
        self.contracts = contracts
        self.counter = counter
        self.lockouts = lockouts
        self.timers = timers
        self._reset_schedule = reset_schedule
        self._calendar = calendar
        self._fire_timer = fire_timer
        self._sessions: dict[int, tuple[object, SessionSchedule]] = {}
        self._rules_of: tuple[Settings, dict[int, Rules]] | None = None

    @property
    def settings(self) -> Settings:
        return self._settings()

    def rules(self, account_id: int) -> Rules:
        # Asked a dozen times per event per account, on the path to enforcement: remember the
        # answer per account for as long as the engine has the same Settings object (a new
        # configuration is always a new object: `Engine.apply_settings`).
        settings = self._settings()
        cache = self._rules_of
        if cache is None or cache[0] is not settings:
            cache = self._rules_of = (settings, {})
        rules = cache[1].get(account_id)
        if rules is None:
            rules = cache[1][account_id] = settings.rules_for(account_id)
        return rules

    def now(self) -> datetime:
        return self.clock.now()

    @property
    def reset_schedule(self) -> ResetSchedule:
        return self._reset_schedule()

    @property
    def calendar(self) -> HolidayCalendar:
        return self._calendar()

    def next_reset(self) -> datetime:
        return self._reset_schedule().next_reset(self.clock.now())

    def trading_day(self) -> date:
        return self._reset_schedule().trading_day(self.clock.now())

    def session(self, cfg: SessionBlockOutsideConfig) -> SessionSchedule:
        """The session schedule of a RULE-009 configuration (cached per configuration)."""
        from zoneinfo import ZoneInfo

        key = id(cfg)
        cached = self._sessions.get(key)
        if cached is not None and cached[0] is cfg and cached[1].calendar is self.calendar:
            return cached[1]
        zone = ZoneInfo(cfg.timezone or self.settings.timezone)
        schedule = SessionSchedule(
            start=cfg.start,
            end=cfg.end,
            days=frozenset(cfg.days),
            zone=zone,
            calendar=self.calendar if cfg.respect_holidays else None,
            early_close_buffer=cfg.early_close_buffer,
        )
        self._sessions[key] = (cfg, schedule)
        return schedule

    def weight(self, account_id: int, root: str) -> Decimal:
        """RULE-015: how much one contract of `root` counts toward contract limits."""
        return self.rules(account_id).contract_weights.weight(root)

    def start_rule_timer(self, rule_id: str, account_id: int, name: str, at: datetime) -> None:
        """Evaluate `rule_id` for the account with `TimerTrigger(name)` at `at`."""
        self.timers.start_timer_at(
            f"rule:{rule_id}:{account_id}:{name}",
            at,
            lambda: self._fire_timer(rule_id, account_id, name),
        )

    def cancel_rule_timer(self, rule_id: str, account_id: int, name: str) -> None:
        self.timers.cancel_timer(f"rule:{rule_id}:{account_id}:{name}")

    def rule_timer_deadline(self, rule_id: str, account_id: int, name: str) -> datetime | None:
        return self.timers.deadline(f"rule:{rule_id}:{account_id}:{name}")

    async def load_rule_state(self, rule_id: str) -> dict[int, str]:
        return await self._store.load_rule_state(rule_id)

    async def save_rule_state(self, rule_id: str, account_id: int, payload: str) -> None:
        await self._store.save_rule_state(rule_id, account_id, payload)

    def defer_rule_state(self, rule_id: str, account_id: int, payload: str) -> None:
        self._store.defer_rule_state(rule_id, account_id, payload)


# --- the rule base class --------------------------------------------------------------------


class Rule(ABC):
    id: ClassVar[str]
    """RULE-001 ..."""
    key: ClassVar[str]
    """Its key under `rules:` in the configuration."""
    title: ClassVar[str]
    category: ClassVar[Category]
    triggers: ClassVar[frozenset[type]]
    waits_for_fills: ClassVar[bool] = False
    """An account-level rule on realized + open P&L (or balance + open P&L): not evaluated
    while a position update that came before its fill waits for the fill (and its fees), at
    most `riskman.engine.fills.SETTLE_AFTER`; the fill evaluates it."""

    def __init__(self, ctx: RuleContext) -> None:
        self.ctx = ctx

    def cfg(self, account_id: int) -> Any:
        return getattr(self.ctx.rules(account_id), self.key)

    def enabled(self, account_id: int) -> bool:
        return bool(self.cfg(account_id).enabled)

    @abstractmethod
    def evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        """What to do about this account now (empty when nothing breaches)."""

    @abstractmethod
    def status(self, account_id: int) -> RuleStatus:
        """Where the account stands against this rule."""

    async def restore(self) -> None:
        """Load persisted state and rebuild timers (called once at start, after modules)."""

    async def on_reset(self, ended: date, at: datetime) -> None:
        """The daily reset that ended trading day `ended` happened at `at`."""

    # --- helpers for subclasses ----------------------------------------------------------

    def locked_by_me(self, account_id: int, symbol: str | None = None) -> bool:
        return any(
            lock.rule == self.id and lock.symbol == symbol
            for lock in self.ctx.lockouts.get_lockout_info(account_id)
        )

    def lock_and_flatten(
        self,
        account_id: int,
        reason: str,
        until: datetime | None,
        unlock: Unlock,
    ) -> list[Intent]:
        """The hard-lock response: lock, cancel every order, close every position."""
        return [
            Lock(
                rule=self.id,
                account_id=account_id,
                reason=reason,
                category=Category.LOCKOUT,
                until=until,
                unlock=unlock,
            ),
            CloseAll(rule=self.id, account_id=account_id, reason=reason, category=Category.LOCKOUT),
            CancelOrders(
                rule=self.id, account_id=account_id, reason=reason, category=Category.LOCKOUT
            ),
        ]

    def cooldown(self, account_id: int, reason: str, until: datetime) -> list[Intent]:
        """A cooldown: no new exposure until `until`; working entry orders are cancelled."""
        return [
            Lock(
                rule=self.id,
                account_id=account_id,
                reason=reason,
                category=Category.COOLDOWN,
                until=until,
                unlock=Unlock.TIME,
                kind=LockKind.COOLDOWN,
            ),
            CancelOrders(
                rule=self.id,
                account_id=account_id,
                reason=reason,
                category=Category.COOLDOWN,
                entries_only=True,
            ),
        ]


def money(value: Decimal) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"

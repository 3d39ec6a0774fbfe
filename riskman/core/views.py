"""Read-only views of engine state for the screens and logs (immutable, cheap to pass around).

Widgets depend only on these types; they never reach into the engine. This module imports the
standard library, `decimal`, `riskman.core.enums` and `riskman.core.locks` (both standard
library only) and nothing else, so a screen or a client can import it without loading the engine.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from riskman.core.enums import OrderSide, OrderType
from riskman.core.locks import Lockout

# --- what the engine reports --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnforcementRecord:
    """One line of the enforcement log."""

    ts: datetime
    account_id: int
    rule: str
    action: str
    target: str
    reason: str
    result: str
    detail: str = ""
    latency_ms: float | None = None
    """From the triggering event reaching riskman to the gateway's answer."""

    @property
    def ok(self) -> bool:
        return self.result in {"ok", "already flat", "already gone", "locked", "cooldown"}


@dataclass(frozen=True, slots=True)
class LockoutChange:
    """A lock was set (`cleared_by` None) or cleared."""

    lockout: Lockout
    cleared_by: str | None = None
    reason: str = ""


class FeedState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    """Connected, subscribed and reconciled: the stream is trusted."""
    RECONNECTING = "reconnecting"
    STALE = "stale"
    """Connected but silent past the limit: being rebuilt; REST is polled meanwhile."""
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class FeedHealth:
    hub: Literal["user", "market"]
    state: FeedState
    last_event_age: float | None = None
    """Seconds since the last inbound frame (event or ping); None before the first."""
    reconnects: int = 0
    detail: str = ""
    since: datetime | None = None

    @property
    def trusted(self) -> bool:
        return self.state is FeedState.CONNECTED


@dataclass(frozen=True, slots=True)
class TradeCounts:
    minute: int
    hour: int
    session: int


@dataclass(frozen=True, slots=True)
class RuleStatus:
    value: str
    """The current value the rule watches, formatted (e.g. "-$320.00", "3 / 5")."""
    limit: str
    used: float | None = None
    """Fraction of the limit used (0.0-1.0+), when that means something."""
    detail: str = ""
    stale: bool = False
    """The value depends on a quote that is missing or stale."""


# --- the snapshot ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderLine:
    """A working order as a screen shows it (the fields of the gateway's order it needs)."""

    id: int
    account_id: int
    contract_id: str
    type: OrderType
    side: OrderSide
    size: int
    limit_price: Decimal | None
    stop_price: Decimal | None


@dataclass(frozen=True, slots=True)
class PositionView:
    account_id: int
    contract_id: str
    symbol: str
    """The ticker a trader knows (ES, not EP)."""
    side: str
    """LONG or SHORT."""
    size: int
    average: Decimal
    last: Decimal | None
    open_pnl: Decimal | None
    """None without a fresh quote or tick data."""
    opened: datetime
    has_stop: bool
    stale: bool
    quote_age: float | None
    price_source: str = "hub"
    """"rest" while the market hub's quotes are stale and the price comes from REST bars."""


@dataclass(frozen=True, slots=True)
class OrderView:
    order: OrderLine
    symbol: str
    protective: bool
    """A stop on the closing side of an open position."""


@dataclass(frozen=True, slots=True)
class LockView:
    id: int
    rule: str
    kind: str
    """lockout or cooldown."""
    reason: str
    symbol: str | None
    until: datetime | None
    unlock: str
    """What ends it: time, reset, session, can_trade, admin, config."""


@dataclass(frozen=True, slots=True)
class RuleView:
    id: str
    key: str
    title: str
    enabled: bool
    status: RuleStatus | None


@dataclass(frozen=True, slots=True)
class AccountView:
    account_id: int
    name: str
    balance: Decimal | None
    can_trade: bool | None
    status: str
    """OK, COOLDOWN or LOCKED."""
    status_reason: str
    realized: Decimal
    open_pnl: Decimal
    open_complete: bool
    """False when a position has no fresh quote: open P&L is partial."""
    total: Decimal
    loss_limit: Decimal | None
    """RULE-003 limit, for the "limit used" bar."""
    profit_target: Decimal | None
    """RULE-013 target."""
    counts: TradeCounts
    count_limits: tuple[int | None, int | None, int | None]
    locks: tuple[LockView, ...]
    positions: tuple[PositionView, ...]
    orders: tuple[OrderView, ...]
    rules: tuple[RuleView, ...]
    pnl_history: tuple[float, ...]
    """Intraday total P&L samples, oldest first (for a sparkline)."""
    unlocks: tuple[UnlockView, ...] = ()
    """An admin's unlocks waiting for `admin.unlock_delay` (issue 13)."""
    guarded: bool = True
    """False: the gateway reports this account but riskman does not guard it."""

    @property
    def loss_used(self) -> float | None:
        """Fraction of the daily loss limit used (0 when in profit)."""
        if self.loss_limit is None or self.loss_limit <= 0:
            return None
        return max(0.0, float(-self.total / self.loss_limit))


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    at: datetime
    trading_day: date
    next_reset: datetime
    session_open: bool | None
    """None when no session rule is enabled."""
    session_change: datetime | None
    """When the session next opens or closes."""
    accounts: tuple[AccountView, ...]
    user_feed: FeedHealth | None
    market_feed: FeedHealth | None
    last_quote_age: float | None
    stale_contracts: tuple[str, ...]
    """Contracts with a position whose quote is missing or stale."""
    log: tuple[EnforcementRecord, ...]
    """Newest first."""
    armed: bool
    """Logged in, subscribed and reconciled: riskman is enforcing from the live stream."""
    rest_priced: tuple[str, ...] = ()
    """Contracts with a position priced from REST bars because their hub quotes stopped."""
    pending: tuple[Pending, ...] = ()
    """Looser rule changes waiting for the next daily reset (issue 13)."""
    timezone: str = ""
    """The engine's timezone (IANA), the one its resets and unlock times run in: the screens
    show times in it. An attached terminal cannot always read the admin overlay that may set
    it (issue 12). "" from an engine that does not say."""

    def account(self, account_id: int) -> AccountView | None:
        for view in self.accounts:
            if view.account_id == account_id:
                return view
        return None


@dataclass(frozen=True, slots=True)
class Pending:
    """A looser value waiting for the next daily reset."""

    account: int | None
    """None: the global rules (or a top-level key); else that account's own rules."""
    key: str
    old: Any
    """The value in force (plain JSON data)."""
    new: Any
    """The value that takes effect at the reset (plain JSON data)."""
    effective: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "key": self.key,
            "from": self.old,
            "to": self.new,
            "effective": None if self.effective is None else self.effective.isoformat(),
        }

    def describe(self) -> str:
        where = "" if self.account is None else f"account {self.account}: "
        when = "" if self.effective is None else f" at {self.effective.isoformat()}"
        return (
            f"{where}{self.key}: {_text(self.old)} -> {_text(self.new)} waits for the reset{when}"
        )


@dataclass(frozen=True, slots=True)
class PendingChange:
    """A looser change began to wait for the reset, was given up, or took effect (issue 13)."""

    what: str
    """pending, cancelled or in_force."""
    change: Pending


def _text(value: Any) -> str:
    return json.dumps(value, default=str) if not isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class UnlockView:
    """An admin asked for a lock to end; it ends at `due` (and may come straight back)."""

    id: int
    lock_id: int | None
    """None: every lock of the account."""
    due: datetime
    reason: str
    comes_back: bool
    """The rule is still breached: the lock will be set again as soon as it ends."""

    def describe(self, now: datetime) -> str:
        left = max(0, int((self.due - now).total_seconds()))
        text = f"unlock in {left // 60}:{left % 60:02d} ({self.reason})"
        if self.comes_back:
            text += "; the rule is still breached, so the lock will come straight back"
        return text


@dataclass(frozen=True, slots=True)
class AccountChanged:
    """Something about an account (or, with None, about everything) changed."""

    account_id: int | None


@dataclass(frozen=True, slots=True)
class ResetDone:
    ended: date
    at: datetime
    how: str


@dataclass(frozen=True, slots=True)
class Breach:
    """A rule (or the lockout gate) acted on an account: published once its actions are sent."""

    rule: str
    account_id: int
    reason: str
    at: datetime | None = None
    trigger: str = ""
    """The event that triggered it, in words ("trade 123: P&L -$200.00", "quote MNQ 21000")."""


@dataclass(frozen=True, slots=True)
class LimitWarning:
    """A money limit crossed a warning threshold (`warnings.at`), once per day and account."""

    account_id: int
    rule: str
    threshold: int
    """Percent of the limit."""
    used: float
    text: str
    at: datetime


EngineChange = (
    EnforcementRecord
    | LockoutChange
    | FeedHealth
    | AccountChanged
    | ResetDone
    | Breach
    | LimitWarning
    | PendingChange
)


# --- breach reports --------------------------------------------------------------------------

BREACH_WINDOW = timedelta(seconds=30)
"""Calls for the same rule and account within this long after a breach belong to it."""

BURST_SETTLE = 0.03
"""Seconds a screen (or the control API's stream) waits after the engine's last change before
it draws (once; then it draws anyway). The gateway sends what belongs together back to back:
a fill's four events, an order and its fill a few milliseconds later. A redraw begun in
between would hold the fill, and the close it needs, back by its whole length (issue 16)."""


@dataclass
class PriceSeen:
    contract_id: str
    symbol: str
    side: str
    size: int
    average: str
    last: str | None
    age: float | None
    """Seconds since the quote arrived."""
    source: str
    """hub or rest."""
    open_pnl: str | None


@dataclass
class CallMade:
    ts: datetime
    action: str
    target: str
    result: str
    detail: str
    latency_ms: float | None


@dataclass
class StateAfter:
    ts: datetime
    status: str
    locks: list[str]
    positions: list[str]
    realized: str
    open_pnl: str


@dataclass
class BreachReport:
    id: int
    ts: datetime
    trading_day: date
    account_id: int
    rule: str
    title: str
    reason: str
    trigger: str
    value: str = ""
    threshold: str = ""
    detail: str = ""
    prices: list[PriceSeen] = field(default_factory=list)
    calls: list[CallMade] = field(default_factory=list)
    after: StateAfter | None = None

    def covers(self, record: EnforcementRecord) -> bool:
        return (
            record.account_id == self.account_id
            and record.rule == self.rule
            and self.ts - timedelta(seconds=1) <= record.ts <= self.ts + BREACH_WINDOW
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> BreachReport:
        data: dict[str, Any] = json.loads(text)
        data["ts"] = datetime.fromisoformat(data["ts"])
        data["trading_day"] = date.fromisoformat(data["trading_day"])
        data["prices"] = [PriceSeen(**p) for p in data.get("prices", [])]
        data["calls"] = [
            CallMade(**{**c, "ts": datetime.fromisoformat(c["ts"])}) for c in data.get("calls", [])
        ]
        after = data.get("after")
        data["after"] = (
            None
            if after is None
            else StateAfter(**{**after, "ts": datetime.fromisoformat(after["ts"])})
        )
        return cls(**data)

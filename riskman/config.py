"""The configuration contract (SPEC.md §4): pydantic-settings over one YAML file.

Sources, strongest first: explicit overrides, `RISKMAN_*` environment variables (`__` nests),
the YAML file, the defaults below. Every invalid value is reported as
``file: key.path: reason``. The API key is a secret: it comes from the environment or from
``gateway.api_key_file`` (refused when others can read it), never from the YAML file.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from riskman.calendar import HolidayCalendar
from riskman.symbols import normalize_root
from riskman.yamlfile import ConfigError as ConfigError
from riskman.yamlfile import YamlProblem, parse_hhmm, parse_zone
from riskman.yamlfile import read_yaml as read_yaml

DEFAULT_CONFIG_PATH = Path("config/riskman.yaml")


def shipped_file(name: str) -> Path:
    """A file of the shipped `config/` folder: from the source tree, or from the installed
    package (the wheel carries a copy under riskman/shipped/)."""
    source = Path(__file__).resolve().parent.parent / "config" / name
    return source if source.exists() else Path(__file__).resolve().parent / "shipped" / name


ENV_PREFIX = "RISKMAN_"
UNTIL_RESET = "until_reset"


# --- value types ----------------------------------------------------------------------------

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


def _parse_seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration like 60, '90s', '30m' or '1h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION_RE.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration (use 60, '90s', '30m' or '1h')")
        seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
    else:
        raise ValueError("expected a duration like 60, '90s', '30m' or '1h'")
    if not seconds > 0 or seconds != seconds or seconds > 366 * 86400:
        raise ValueError("a duration must be positive and at most a year")
    return seconds


def _parse_duration_or_reset(value: Any) -> float | str:
    if isinstance(value, str) and value.strip().lower() == UNTIL_RESET:
        return UNTIL_RESET
    return _parse_seconds(value)


def _duration_out(value: float | str) -> float | int | str:
    if isinstance(value, str):
        return value
    return int(value) if value == int(value) else value


Seconds = Annotated[float, BeforeValidator(_parse_seconds), PlainSerializer(_duration_out)]
"""A duration in seconds: ``60``, ``"90s"``, ``"30m"``, ``"1h"``."""


def _parse_seconds_or_zero(value: Any) -> float:
    if not isinstance(value, bool) and value in (0, "0"):
        return 0.0
    return _parse_seconds(value)


SecondsOrZero = Annotated[
    float, BeforeValidator(_parse_seconds_or_zero), PlainSerializer(_duration_out)
]
"""A duration in seconds, or ``0`` (what 0 means is the key's to say)."""

CooldownDuration = Annotated[
    float | str, BeforeValidator(_parse_duration_or_reset), PlainSerializer(_duration_out)
]
"""A duration in seconds, or ``until_reset`` (until the next daily reset)."""

HHMM = Annotated[time, BeforeValidator(parse_hhmm), PlainSerializer(lambda t: t.strftime("%H:%M"))]


TimeZoneName = Annotated[str, BeforeValidator(parse_zone)]


def _parse_symbol(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9]{1,12}", value.strip()):
        raise ValueError(f"{value!r} is not a symbol root such as MNQ or ES")
    return normalize_root(value)


Symbol = Annotated[str, BeforeValidator(_parse_symbol)]
"""A symbol root; the exchange ticker and the gateway root both work (ES == EP)."""

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _parse_day(value: Any) -> str:
    if isinstance(value, str):
        key = value.strip().lower()[:3]
        if key in _DAYS and _DAYS[_DAYS.index(key)].startswith(key) and len(value.strip()) >= 3:
            return key
    raise ValueError(f"{value!r} is not a weekday (mon, tue, wed, thu, fri, sat, sun)")


Day = Annotated[str, BeforeValidator(_parse_day)]


def _money(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected an amount in dollars")
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


PositiveMoney = Annotated[
    Decimal,
    BeforeValidator(_money),
    Field(gt=0, lt=Decimal("1e9"), allow_inf_nan=False),
    PlainSerializer(lambda d: int(d) if d == d.to_integral_value() else float(d)),
]
Money = Annotated[
    Decimal,
    BeforeValidator(_money),
    Field(gt=Decimal("-1e9"), lt=Decimal("1e9"), allow_inf_nan=False),
    PlainSerializer(lambda d: int(d) if d == d.to_integral_value() else float(d)),
]


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a whole number, not true/false")
    return value


PositiveInt = Annotated[int, BeforeValidator(_no_bool), Field(gt=0, le=1_000_000)]
NonNegativeInt = Annotated[int, BeforeValidator(_no_bool), Field(ge=0, le=1_000_000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


# --- commitment (issue 13): which of two values of a rule field is stricter ----------------


@dataclass(frozen=True, slots=True)
class Loosens:
    """How a field of a rule (or of the committed settings) becomes looser.

    Every field the engine commits to carries one of these in its type's metadata. A stricter
    value applies at once; a looser one waits for the next daily reset (riskman/engine/
    commitment.py). `None` is always the loosest value (no limit, not set).
    """

    way: Literal["higher", "lower", "off", "on", "fewer", "more", "order", "any"]
    order: tuple[str, ...] = ()
    """For `order`: the choices, loosest first."""

    def describe(self) -> str:
        return {
            "higher": "higher is looser",
            "lower": "lower is looser",
            "off": "turning it off is looser",
            "on": "turning it on is looser",
            "fewer": "removing an entry is looser",
            "more": "adding an entry is looser",
            "order": "from looser to stricter: " + " → ".join(self.order),
            "any": "any change waits for the reset",
        }[self.way]


HIGHER_LOOSER = Loosens("higher")
LATER_LOOSER = Loosens("higher")
LOWER_LOOSER = Loosens("lower")
EARLIER_LOOSER = Loosens("lower")
OFF_LOOSER = Loosens("off")
ON_LOOSER = Loosens("on")
FEWER_LOOSER = Loosens("fewer")
MORE_LOOSER = Loosens("more")
ANY_CHANGE_WAITS = Loosens("any")


def loosest_first(*choices: str) -> Loosens:
    return Loosens("order", tuple(choices))


def loosens(field: Any) -> Loosens | None:
    """The commitment marker of a pydantic field (None: a nested model, or not committed)."""
    return next((m for m in field.metadata if isinstance(m, Loosens)), None)


# --- rules (SPEC.md §3) ---------------------------------------------------------------------


class RuleConfig(Strict):
    """What every rule's settings have (the rule itself is `riskman.core.rules.Rule`)."""

    enabled: Annotated[bool, OFF_LOOSER] = True


class ScalingTier(Strict):
    balance_above: Annotated[
        Decimal,
        BeforeValidator(_money),
        Field(ge=0, lt=Decimal("1e9"), allow_inf_nan=False),
        PlainSerializer(lambda d: int(d) if d == d.to_integral_value() else float(d)),
    ]
    """Profit over the starting balance, at the end of the previous trading day."""
    limit: PositiveInt


class MaxContractsConfig(RuleConfig):
    limit: Annotated[PositiveInt, HIGHER_LOOSER] = 5
    """The limit; with `scaling`, the limit below the first tier."""
    count: Annotated[Literal["net", "gross"], loosest_first("net", "gross")] = "net"
    action: Annotated[
        Literal["reduce_to_limit", "close_all"], loosest_first("reduce_to_limit", "close_all")
    ] = "reduce_to_limit"
    count_orders: Annotated[bool, OFF_LOOSER] = False
    """Working entry orders count as if they filled (one over the limit is cancelled)."""
    # A tier raises the limit as the profit grows: any change of the plan waits.
    scaling: Annotated[list[ScalingTier], ANY_CHANGE_WAITS] = Field(
        default_factory=list, max_length=20
    )
    """Topstep's scaling plan: the limit by end-of-day profit over starting_balance."""
    starting_balance: Annotated[PositiveMoney | None, ANY_CHANGE_WAITS] = None
    """For `scaling`; default: max_loss_limit.starting_balance."""

    @field_validator("scaling")
    @classmethod
    def _tiers_sorted(cls, tiers: list[ScalingTier]) -> list[ScalingTier]:
        above = [tier.balance_above for tier in tiers]
        if len(set(above)) != len(above):
            raise ValueError("two tiers have the same balance_above")
        return sorted(tiers, key=lambda tier: tier.balance_above)


class MaxContractsPerInstrumentConfig(RuleConfig):
    default_limit: Annotated[PositiveInt | None, HIGHER_LOOSER] = 3
    limits: Annotated[dict[Symbol, PositiveInt], HIGHER_LOOSER] = Field(default_factory=dict)
    """Per symbol; a symbol added or removed waits for the reset (it replaces default_limit)."""
    unknown_symbol: Annotated[Literal["allow", "block"], loosest_first("allow", "block")] = "allow"
    action: Annotated[
        Literal["reduce_to_limit", "close"], loosest_first("reduce_to_limit", "close")
    ] = "reduce_to_limit"
    count_orders: Annotated[bool, OFF_LOOSER] = False
    """Working entry orders count as if they filled (one over the limit is cancelled)."""

    @field_validator("limits", mode="before")
    @classmethod
    def _one_name_per_symbol(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            seen: dict[str, str] = {}
            for key in value:
                root = normalize_root(str(key))
                if root in seen:
                    raise ValueError(f"{seen[root]} and {key} are the same contract")
                seen[root] = str(key)
        return value


class DailyRealizedLossConfig(RuleConfig):
    limit: Annotated[PositiveMoney, HIGHER_LOOSER] = Decimal(500)
    include_unrealized: Annotated[bool, OFF_LOOSER] = True


class DailyUnrealizedLossConfig(RuleConfig):
    limit: Annotated[PositiveMoney, HIGHER_LOOSER] = Decimal(300)


class MaxUnrealizedProfitConfig(RuleConfig):
    target: Annotated[PositiveMoney, HIGHER_LOOSER] = Decimal(1000)


class FrequencyCooldowns(Strict):
    per_minute: Annotated[CooldownDuration, LOWER_LOOSER] = 60.0
    per_hour: Annotated[CooldownDuration, LOWER_LOOSER] = 1800.0
    per_session: Annotated[CooldownDuration, LOWER_LOOSER] = UNTIL_RESET


class TradeFrequencyLimitConfig(RuleConfig):
    per_minute: Annotated[PositiveInt | None, HIGHER_LOOSER] = 3
    per_hour: Annotated[PositiveInt | None, HIGHER_LOOSER] = 10
    per_session: Annotated[PositiveInt | None, HIGHER_LOOSER] = 50
    cooldowns: FrequencyCooldowns = Field(default_factory=FrequencyCooldowns)
    count_trades_as: Annotated[Literal["orders", "fills"], loosest_first("orders", "fills")] = (
        "orders"
    )
    """orders: an order that fills counts once; fills: every entry and exit fill counts."""


class LossTier(Strict):
    loss: Annotated[PositiveMoney, HIGHER_LOOSER]
    cooldown: Annotated[CooldownDuration, LOWER_LOOSER]


class CooldownAfterLossConfig(RuleConfig):
    tiers: list[LossTier] = Field(
        default_factory=lambda: [
            LossTier(loss=Decimal(100), cooldown=300),
            LossTier(loss=Decimal(200), cooldown=900),
        ],
        min_length=1,
        max_length=20,
    )

    @field_validator("tiers")
    @classmethod
    def _sorted(cls, tiers: list[LossTier]) -> list[LossTier]:
        losses = [tier.loss for tier in tiers]
        if len(set(losses)) != len(losses):
            raise ValueError("two tiers have the same loss")
        return sorted(tiers, key=lambda tier: tier.loss)


class NoStopLossGraceConfig(RuleConfig):
    grace_seconds: Annotated[Seconds, HIGHER_LOOSER] = 30.0


class SessionBlockOutsideConfig(RuleConfig):
    start: Annotated[HHMM, EARLIER_LOOSER] = time(8, 30)
    end: Annotated[HHMM, LATER_LOOSER] = time(15, 10)
    days: Annotated[list[Day], MORE_LOOSER] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"]
    )
    respect_holidays: Annotated[bool, OFF_LOOSER] = True
    flatten_at_end: Annotated[bool, OFF_LOOSER] = True
    early_close_buffer: Annotated[
        float,
        BeforeValidator(lambda v: 0.0 if v in (0, "0", 0.0) else _parse_seconds(v)),
        PlainSerializer(_duration_out),
        LOWER_LOOSER,
    ] = 300.0
    timezone: Annotated[TimeZoneName | None, ANY_CHANGE_WAITS] = None

    def looser_than(self, old: SessionBlockOutsideConfig) -> bool:
        """Commitment: a start or end moved across midnight cannot be judged time by time."""
        return (self.end <= self.start) != (old.end <= old.start)

    @model_validator(mode="after")
    def _window(self) -> SessionBlockOutsideConfig:
        if self.start == self.end:
            raise ValueError("start and end are the same time: the session would be empty")
        if not self.days:
            raise ValueError("days is empty: no session would ever be open")
        return self


class AuthLossGuardConfig(RuleConfig):
    pass


class SymbolBlocksConfig(RuleConfig):
    symbols: Annotated[list[Symbol], FEWER_LOOSER] = Field(default_factory=list)


class Breakeven(Strict):
    trigger_ticks: Annotated[PositiveInt, HIGHER_LOOSER] = 10
    offset_ticks: Annotated[NonNegativeInt, LOWER_LOOSER] = 1


class Trailing(Strict):
    activation_ticks: Annotated[PositiveInt, HIGHER_LOOSER] = 20
    distance_ticks: Annotated[PositiveInt, HIGHER_LOOSER] = 10


class TradeManagementConfig(RuleConfig):
    breakeven: Breakeven | None = Field(default_factory=Breakeven)
    trailing: Trailing | None = Field(default_factory=Trailing)

    @model_validator(mode="after")
    def _something_to_do(self) -> TradeManagementConfig:
        if self.enabled and self.breakeven is None and self.trailing is None:
            raise ValueError("enable breakeven or trailing (or disable the rule)")
        if (
            self.breakeven is not None
            and self.breakeven.offset_ticks >= self.breakeven.trigger_ticks
        ):
            raise ValueError("breakeven.offset_ticks must be below breakeven.trigger_ticks")
        return self


class DailyRealizedProfitConfig(RuleConfig):
    target: Annotated[PositiveMoney, HIGHER_LOOSER] = Decimal(1000)


class MaxLossLimitConfig(RuleConfig):
    starting_balance: Annotated[PositiveMoney, LOWER_LOOSER] = Decimal(50000)
    drawdown: Annotated[PositiveMoney, HIGHER_LOOSER] = Decimal(2000)
    eod_high: Annotated[PositiveMoney | None, LOWER_LOOSER] = None
    """The highest end-of-day balance so far, if the account traded before riskman watched it."""

    @model_validator(mode="after")
    def _drawdown_below_balance(self) -> MaxLossLimitConfig:
        if self.drawdown >= self.starting_balance:
            raise ValueError("drawdown must be smaller than starting_balance")
        return self


class TrailingDailyLossConfig(RuleConfig):
    """RULE-016: TopstepX's trailing Personal Daily Loss Limit."""

    limit: Annotated[PositiveMoney, HIGHER_LOOSER] = Decimal(1000)
    trail: Annotated[Literal["realized", "equity"], loosest_first("realized", "equity")] = (
        "realized"
    )
    """What the day's high follows: the balance, or balance + open P&L."""


class WeeklyLimitsConfig(RuleConfig):
    """RULE-017: the trading week (from Sunday's daily reset) P&L and trade count."""

    loss: Annotated[PositiveMoney | None, HIGHER_LOOSER] = None
    profit: Annotated[PositiveMoney | None, HIGHER_LOOSER] = None
    trades: Annotated[PositiveInt | None, HIGHER_LOOSER] = None
    include_unrealized: Annotated[bool, OFF_LOOSER] = True
    count_trades_as: Annotated[Literal["orders", "fills"], loosest_first("orders", "fills")] = (
        "orders"
    )
    """orders: an order that fills counts once; fills: every entry and exit fill counts."""

    @model_validator(mode="after")
    def _something_to_watch(self) -> WeeklyLimitsConfig:
        if self.enabled and self.loss is None and self.profit is None and self.trades is None:
            raise ValueError("set loss, profit or trades (or disable the rule)")
        return self


class NoAveragingDownConfig(RuleConfig):
    """RULE-018: an addition at a worse price than the average entry is cut back."""


class NoFlipConfig(RuleConfig):
    """RULE-019: one fill that turns a long into a short (or back) is cut back to flat."""


class StopDisciplineConfig(RuleConfig):
    """RULE-020: protective stops only move towards the market."""

    restore: Annotated[bool, OFF_LOOSER] = True
    """A widened protective stop is put back where it was."""
    max_ticks: Annotated[PositiveInt | None, HIGHER_LOOSER] = None
    """A protective stop farther than this from the entry is pulled in to it."""
    cancel_grace: Annotated[SecondsOrZero, HIGHER_LOOSER] = 5.0
    """With RULE-008 off: how long a position may stay without a stop after its stop was
    cancelled before it is closed."""


def _parse_local_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(
        f'{value!r} is not a date-time like "2026-12-10T13:25" (quote it in YAML; add an '
        "offset such as -06:00, or it is in the rule's timezone)"
    )


LocalDateTime = Annotated[
    datetime,
    BeforeValidator(_parse_local_datetime),
    PlainSerializer(lambda d: d.isoformat(timespec="minutes")),
]
"""An ISO date-time; without an offset it is a wall time in the rule's timezone."""


class BlackoutWindow(Strict):
    start: LocalDateTime
    end: LocalDateTime
    reason: str = "blackout"

    @model_validator(mode="after")
    def _ordered(self) -> BlackoutWindow:
        if (self.start.tzinfo is None) == (self.end.tzinfo is None) and self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class WeeklyBlackout(Strict):
    days: list[Day] = Field(min_length=1)
    start: HHMM
    end: HHMM
    """Before `start`: the window ends the next day."""
    reason: str = "blackout"

    @model_validator(mode="after")
    def _not_empty(self) -> WeeklyBlackout:
        if self.start == self.end:
            raise ValueError("start and end are the same time: the window would be empty")
        return self


class BlackoutsConfig(RuleConfig):
    """RULE-021: windows in which no new exposure is allowed (news, the open...)."""

    # A window removed (or changed: removed and another added) is looser; one added stricter.
    windows: Annotated[list[BlackoutWindow], FEWER_LOOSER] = Field(default_factory=list)
    weekly: Annotated[list[WeeklyBlackout], FEWER_LOOSER] = Field(default_factory=list)
    ics_file: Annotated[Path | None, ANY_CHANGE_WAITS] = None
    """An iCalendar file (an exported economic calendar), relative to the config file."""
    around_events: Annotated[SecondsOrZero, LOWER_LOOSER] = 300.0
    """An iCalendar event without an end blocks this long before and after it."""
    flatten_before: Annotated[Seconds | None, LOWER_LOOSER] = None
    """Flatten this long before a window starts (none: open positions are kept)."""
    timezone: Annotated[TimeZoneName | None, ANY_CHANGE_WAITS] = None

    @model_validator(mode="after")
    def _something_to_block(self) -> BlackoutsConfig:
        if self.enabled and not (self.windows or self.weekly or self.ics_file):
            raise ValueError("set windows, weekly or ics_file (or disable the rule)")
        return self


# TopstepX counts these micros as a tenth of a mini (RULE-015).
DEFAULT_MICROS = ("MNQ", "MES", "M2K", "MYM", "MCLE", "MGC")


class ContractWeights(RuleConfig):
    # Weights make micros count for less: turning them on is the looser way.
    enabled: Annotated[bool, ON_LOOSER] = False
    micro_weight: Annotated[Decimal, BeforeValidator(_money), Field(gt=0, le=1), LOWER_LOOSER] = (
        Decimal("0.1")
    )
    micros: Annotated[list[Symbol], MORE_LOOSER] = Field(
        default_factory=lambda: list(DEFAULT_MICROS)
    )
    weights: Annotated[
        dict[Symbol, Annotated[Decimal, BeforeValidator(_money), Field(gt=0, le=100)]],
        LOWER_LOOSER,
    ] = Field(default_factory=dict)

    def weight(self, root: str) -> Decimal:
        if not self.enabled:
            return Decimal(1)
        if root in self.weights:
            return self.weights[root]
        return self.micro_weight if root in self.micros else Decimal(1)


def _off(model: type[RuleConfig]) -> Any:
    return Field(default_factory=lambda: model(enabled=False))


class Rules(Strict):
    """Every rule; a rule missing from the file is off."""

    max_contracts: MaxContractsConfig = _off(MaxContractsConfig)
    max_contracts_per_instrument: MaxContractsPerInstrumentConfig = _off(
        MaxContractsPerInstrumentConfig
    )
    daily_realized_loss: DailyRealizedLossConfig = _off(DailyRealizedLossConfig)
    daily_unrealized_loss: DailyUnrealizedLossConfig = _off(DailyUnrealizedLossConfig)
    max_unrealized_profit: MaxUnrealizedProfitConfig = _off(MaxUnrealizedProfitConfig)
    trade_frequency_limit: TradeFrequencyLimitConfig = _off(TradeFrequencyLimitConfig)
    cooldown_after_loss: CooldownAfterLossConfig = _off(CooldownAfterLossConfig)
    no_stop_loss_grace: NoStopLossGraceConfig = _off(NoStopLossGraceConfig)
    session_block_outside: SessionBlockOutsideConfig = _off(SessionBlockOutsideConfig)
    auth_loss_guard: AuthLossGuardConfig = _off(AuthLossGuardConfig)
    symbol_blocks: SymbolBlocksConfig = _off(SymbolBlocksConfig)
    trade_management: TradeManagementConfig = _off(TradeManagementConfig)
    daily_realized_profit: DailyRealizedProfitConfig = _off(DailyRealizedProfitConfig)
    max_loss_limit: MaxLossLimitConfig = _off(MaxLossLimitConfig)
    contract_weights: ContractWeights = _off(ContractWeights)
    trailing_daily_loss: TrailingDailyLossConfig = _off(TrailingDailyLossConfig)
    weekly_limits: WeeklyLimitsConfig = _off(WeeklyLimitsConfig)
    no_averaging_down: NoAveragingDownConfig = _off(NoAveragingDownConfig)
    no_flip: NoFlipConfig = _off(NoFlipConfig)
    stop_discipline: StopDisciplineConfig = _off(StopDisciplineConfig)
    blackouts: BlackoutsConfig = _off(BlackoutsConfig)


RULE_KEYS: tuple[str, ...] = tuple(Rules.model_fields)


# --- the rest of the file -------------------------------------------------------------------


class GatewayConfig(Strict):
    api_url: str = "https://api.topstepx.com"
    user_hub_url: str = "https://rtc.topstepx.com/hubs/user"
    market_hub_url: str = "https://rtc.topstepx.com/hubs/market"
    username: str | None = None
    api_key: SecretStr | None = None
    """Only from RISKMAN_GATEWAY__API_KEY (or read from api_key_file); never from the file."""
    api_key_file: Path | None = None
    request_timeout: Seconds = 10.0
    hub_silence_timeout: Seconds = 30.0
    """A hub with no inbound traffic (events or pings) this long is rebuilt."""
    reconnect_max_backoff: Seconds = 30.0
    stale_poll_interval: Seconds = 5.0
    """While a feed is stale, positions are re-read over REST this often."""
    start_wait: SecondsOrZero = 120.0
    """At start, how long to keep retrying a gateway that cannot be reached before giving up
    with a non-zero exit (0: retry forever)."""

    @field_validator("api_url", "user_hub_url", "market_hub_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^(https?|wss?)://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")


class AccountEntry(Strict):
    id: Annotated[int, Field(gt=0)]
    rules: Rules | None = None
    """This account's rules: the global rules with the given keys overridden."""


def _account_entry(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected an account id")
    if isinstance(value, int):
        return {"id": value}
    if isinstance(value, str) and value.strip().isdigit():
        return {"id": int(value)}
    return value


class QuotesConfig(Strict):
    stale_after: Seconds = 10.0
    """A quote older than this never triggers a close by itself and shows as stale."""


class AdminConfig(Strict):
    idle_lock: Seconds = 300.0
    """The admin screens lock again after this long without a key press."""
    password_file: Path | None = None
    """Salted scrypt hash of the admin password; default: admin.hash beside the config file
    (beside the database when there is no file). Only from the file, never the environment."""
    unlock_delay: Annotated[Seconds, Field(ge=300), LOWER_LOOSER] = 1800.0
    """An admin's unlock takes effect this long after it is asked for (at least 5 minutes)."""


class ControlConfig(Strict):
    socket: Path | None = None
    """The control API's Unix socket; default: riskman.sock beside the database (see
    riskman.control.paths for the short fallback when that path is too long)."""
    group: str | None = None
    """Group given to the socket (mode 0660), so a trader in it can reach the engine."""


class EnforcementConfig(Strict):
    verify_after: Seconds = 2.0
    """After a close, how long to wait for the gateway to confirm before re-reading it."""
    max_attempts: PositiveInt = 5


NotifyEvent = Literal[
    "lockout",
    "cooldown",
    "unlock",
    "action_failed",
    "not_armed",
    "stale_feed",
    "warning",
    "pending_change",
    "daily_summary",
]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = get_args(NotifyEvent)


class WarningsConfig(Strict):
    at: list[Annotated[int, BeforeValidator(_no_bool), Field(gt=0, lt=100)]] = Field(
        default_factory=lambda: [50, 75, 90], max_length=10
    )
    """Percent of a money limit (daily loss, max-loss distance, profit target) that warns once
    per trading day and account."""

    @field_validator("at")
    @classmethod
    def _sorted_unique(cls, values: list[int]) -> list[int]:
        return sorted(set(values))


class NotifyConfig(Strict):
    urls: list[SecretStr] = Field(default_factory=list, max_length=50)
    """Apprise URLs (ntfy://, discord://, tgram://, json:// ...); they may carry tokens, so
    they are hidden everywhere riskman prints or logs."""
    urls_file: Path | None = None
    """A file of mode 0600 with one Apprise URL a line (# comments allowed)."""
    events: list[NotifyEvent] = Field(default_factory=lambda: list(NOTIFY_EVENTS))
    min_interval: Seconds = 10.0
    """At most one message per event kind and account this often; the rest are summarised."""
    retries: NonNegativeInt = 3
    timeout: Seconds = 10.0
    """How long one delivery attempt may take."""


class ConsistencyConfig(Strict):
    max_day_share: Annotated[Decimal, BeforeValidator(_money), Field(gt=0, le=1)] | None = None
    """The best day's largest share of the total profit (Topstep's consistency target, e.g.
    0.5); shown with a bar, and a warning when today would break it."""


class Settings(BaseSettings):
    """The effective configuration."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
        nested_model_default_partial_update=True,
    )

    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    accounts: list[Annotated[AccountEntry, BeforeValidator(_account_entry)]] = Field(
        default_factory=list
    )
    timezone: TimeZoneName = "America/Chicago"
    daily_reset: HHMM = time(17, 0)
    holidays_file: Path = Path("holidays.yaml")
    database: Path = Path("riskman.db")
    rules: Rules = Field(default_factory=Rules)
    quotes: QuotesConfig = Field(default_factory=QuotesConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    enforcement: EnforcementConfig = Field(default_factory=EnforcementConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    warnings: WarningsConfig = Field(default_factory=WarningsConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    consistency: ConsistencyConfig = Field(default_factory=ConsistencyConfig)

    config_path: ClassVar[Path | None] = None
    overlay_path: ClassVar[Path | None] = None
    """The admin overlay merged into these settings (None: none was)."""
    overlay_data: ClassVar[dict[str, Any] | None] = None
    overlay_problem: ClassVar[str | None] = None
    """Why the admin overlay could not be read (another user's state folder), if so."""

    @model_validator(mode="before")
    @classmethod
    def _merge_account_rules(cls, data: Any) -> Any:
        # Per-account rules override the global ones key by key: merge before validating so a
        # bad override is reported at accounts.N.rules.key.path.
        if not isinstance(data, dict):
            return data
        base = data.get("rules") or {}
        accounts = data.get("accounts")
        if not isinstance(base, Mapping) or not isinstance(accounts, list):
            return data
        merged = []
        for entry in accounts:
            if isinstance(entry, Mapping) and isinstance(entry.get("rules"), Mapping):
                entry = {**entry, "rules": _deep_merge(base, entry["rules"])}
            merged.append(entry)
        return {**data, "accounts": merged}

    @model_validator(mode="after")
    def _unique_accounts(self) -> Settings:
        ids = [entry.id for entry in self.accounts]
        if len(set(ids)) != len(ids):
            raise ValueError("accounts lists the same id twice")
        return self

    # --- queries ------------------------------------------------------------------------

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def account_ids(self) -> list[int]:
        return [entry.id for entry in self.accounts]

    def rules_for(self, account_id: int) -> Rules:
        for entry in self.accounts:
            if entry.id == account_id and entry.rules is not None:
                return entry.rules
        return self.rules

    @property
    def state_dir(self) -> Path:
        """Where riskman keeps what must outlive a new database (the rules it committed to,
        that a password has existed): beside the config file when riskman may write there
        (embedded), else beside the database (the guard: a root-owned /etc/riskman)."""
        if self.config_path is not None:
            folder = self.config_path.resolve().parent
            if os.access(folder, os.W_OK):
                return folder
        return self.database.parent

    @property
    def admin_overlay(self) -> Path:
        """Where the admin's own changes live when riskman cannot write the config file
        (the guard): `riskman.admin.yaml` beside the database."""
        return self.database.parent / OVERLAY_NAME

    @property
    def password_file(self) -> Path:
        if self.admin.password_file is not None:
            return self.admin.password_file
        return self.database.parent / "admin.hash"

    def notify_urls(self) -> list[str]:
        """Every notification URL: `notify.urls`, then the lines of `notify.urls_file`."""
        urls = [url.get_secret_value() for url in self.notify.urls]
        if self.notify.urls_file is not None:
            for line in self.notify.urls_file.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    urls.append(line)
        return urls

    def api_key_value(self) -> str | None:
        """The API key: from the environment, else from api_key_file."""
        if self.gateway.api_key is not None:
            return self.gateway.api_key.get_secret_value()
        if self.gateway.api_key_file is not None:
            return self.gateway.api_key_file.read_text(encoding="utf-8").strip() or None
        return None

    def redacted(self) -> dict[str, Any]:
        """The effective configuration as plain data with every secret replaced."""
        data = self.model_dump(mode="json")
        data["notify"]["urls"] = [
            f"<URL {n} ({_url_scheme(url.get_secret_value())}), hidden>"
            for n, url in enumerate(self.notify.urls, 1)
        ]
        gateway = data["gateway"]
        if self.gateway.api_key is not None:
            gateway["api_key"] = "<set from RISKMAN_GATEWAY__API_KEY, hidden>"
        elif self.gateway.api_key_file is not None:
            gateway["api_key"] = f"<read from {self.gateway.api_key_file}, hidden>"
        else:
            gateway["api_key"] = "<not set>"
        return data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.config_path is not None:
            sources.append(YamlFileSource(settings_cls, cls.config_path, cls.overlay_data))
        return tuple(sources)


def _url_scheme(url: str) -> str:
    """Only the scheme of a URL: everything after it may be a token."""
    scheme, sep, _ = url.partition("://")
    return f"{scheme}://" if sep and scheme.isalnum() else "?"


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = _deep_merge(result[key], value)
        else:
            result[key] = value
    return result


# --- YAML source ----------------------------------------------------------------------------


class YamlFileSource(PydanticBaseSettingsSource):
    """Reads the YAML file, with the admin overlay merged over it; refuses an API key
    written in it."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        path: Path,
        overlay: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(settings_cls)
        self.path = path
        self.data = read_yaml(path)
        gateway = self.data.get("gateway")
        if isinstance(gateway, Mapping) and gateway.get("api_key") not in (None, ""):
            raise YamlProblem(
                "gateway.api_key",
                "the API key must not be written in the config file; set "
                "RISKMAN_GATEWAY__API_KEY or gateway.api_key_file (mode 0600)",
            )
        if overlay:
            self.data = merge_overlay(self.data, overlay)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


# --- loading --------------------------------------------------------------------------------


def _env_name(loc: Iterable[Any]) -> str:
    return ENV_PREFIX + "__".join(str(part).upper() for part in loc)


def _format_errors(path: Path | str, exc: ValidationError) -> list[str]:
    problems: list[str] = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ()) if not str(part).startswith("function-")]
        # pydantic adds the union member / validator name to some locations; drop them.
        loc = [part for part in loc if part not in {"str", "float", "int", "constrained-str"}]
        key = ".".join(loc) or "(top level)"
        reason = error.get("msg", "invalid").removeprefix("Value error, ")
        if error.get("type") == "extra_forbidden":
            reason = "unknown key (check the spelling against SPEC.md §4)"
        env = _env_name(loc)
        source = f" (from {env})" if loc and env in os.environ else ""
        problems.append(f"{path}: {key}: {reason}{source}")
    # An account's rules are the global rules merged with its overrides: a problem in the
    # global part would be reported once per account too.
    global_problems = {p for p in problems if p.startswith(f"{path}: rules.")}
    return [
        p
        for p in problems
        if re.sub(r"^(.*?: )accounts\.\d+\.(rules\.)", r"\1\2", p) == p
        or re.sub(r"^(.*?: )accounts\.\d+\.(rules\.)", r"\1\2", p) not in global_problems
    ]


def _resolve(base: Path, value: Path) -> Path:
    value = value.expanduser()
    return value if value.is_absolute() else (base / value).resolve()


def check_private_file(path: Path, what: str) -> None:
    """Refuse a secret file that others can read (it must be mode 0600 or stricter)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ValueError(f"{what} {path} does not exist") from None
    if os.name != "nt" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(
            f"{what} {path} can be read by others (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {path}"
        )


def _check_ics_files(settings: Settings, base: Path, config_path: Path | str) -> list[str]:
    """Resolve RULE-021's `ics_file`s against the config file's folder and read each once."""
    from riskman.calendar import read_ics  # the calendar owns the file format

    problems = []
    scopes = [("rules", settings.rules)] + [
        (f"accounts.{n}.rules", entry.rules)
        for n, entry in enumerate(settings.accounts)
        if entry.rules is not None
    ]
    for where, rules in scopes:
        cfg = rules.blackouts
        if cfg.ics_file is None:
            continue
        cfg.ics_file = _resolve(base, cfg.ics_file)
        if not cfg.enabled:
            continue
        zone = ZoneInfo(cfg.timezone or settings.timezone)
        try:
            read_ics(cfg.ics_file, zone, timedelta(seconds=cfg.around_events))
        except ValueError as exc:
            problem = f"{config_path}: {where}.blackouts.ics_file: {exc}"
            if problem not in problems:
                problems.append(problem)
    return problems


def load_config(
    path: Path | str | None = None, *, overlay: Path | None = None, **overrides: Any
) -> Settings:
    """Load and validate the configuration; raise :class:`ConfigError` with every problem.

    The admin overlay (`riskman.admin.yaml` beside the database, or `overlay` when given)
    is merged over the file's data before validation: environment > overlay > file.
    Problems only the overlay brings name both files. An overlay this process may not read
    (the guard's, read by the trader) is left out and said in `overlay_problem`.
    """
    config_path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    # The password file decides who may change the rules: a variable must not move it.
    for name, value in os.environ.items():
        upper = name.upper()
        if upper == f"{ENV_PREFIX}ADMIN__PASSWORD_FILE" or (
            upper == f"{ENV_PREFIX}ADMIN" and "password_file" in value
        ):
            raise ConfigError(
                [
                    f"{config_path}: admin.password_file: cannot be set from the environment "
                    f"({name}); set it in the config file"
                ]
            )
    settings = _load(config_path, str(config_path), None, None, overrides)
    where = overlay if overlay is not None else settings.admin_overlay
    try:
        data = read_overlay(where)
    except OSError as exc:
        if overlay is not None:
            raise ConfigError([f"{where}: (file): cannot be read ({exc.strerror})"]) from None
        type(settings).overlay_problem = (
            f"the admin overlay {where} could not be read ({exc.strerror}): the values "
            "shown may differ from those in force"
        )
        return settings
    if data is None:
        if overlay is not None:
            raise ConfigError([f"{where}: (file): not found"])
        return settings
    label = f"{config_path} (with the admin overlay {where})"
    return _load(config_path, label, where, data, overrides)


def _load(
    config_path: Path,
    label: str,
    overlay_path: Path | None,
    overlay_data: dict[str, Any] | None,
    overrides: Mapping[str, Any],
) -> Settings:
    loaded = type(
        "LoadedSettings",
        (Settings,),
        {
            "config_path": config_path,
            "overlay_path": overlay_path,
            "overlay_data": overlay_data,
            "overlay_problem": None,
        },
    )
    try:
        settings: Settings = loaded(**overrides)
    except YamlProblem as exc:
        raise ConfigError([f"{config_path}: {exc.key}: {exc.reason}"]) from None
    except ValidationError as exc:
        raise ConfigError(_format_errors(label, exc)) from None

    base = config_path.resolve().parent
    settings.holidays_file = _resolve(base, settings.holidays_file)
    settings.database = _resolve(base, settings.database)
    if settings.admin.password_file is not None:
        settings.admin.password_file = _resolve(base, settings.admin.password_file)
    if settings.control.socket is not None:
        settings.control.socket = _resolve(base, settings.control.socket)
    problems = []
    if settings.gateway.api_key_file is not None:
        settings.gateway.api_key_file = _resolve(base, settings.gateway.api_key_file)
        if settings.gateway.api_key is None:
            try:
                check_private_file(settings.gateway.api_key_file, "api_key_file")
            except ValueError as exc:
                problems.append(f"{config_path}: gateway.api_key_file: {exc}")
    if settings.notify.urls_file is not None:
        settings.notify.urls_file = _resolve(base, settings.notify.urls_file)
        try:
            check_private_file(settings.notify.urls_file, "urls_file")
        except ValueError as exc:
            problems.append(f"{config_path}: notify.urls_file: {exc}")
    problems.extend(_check_ics_files(settings, base, label))
    if not settings.holidays_file.exists():
        problems.append(f"{label}: holidays_file: {settings.holidays_file} does not exist")
    elif not settings.holidays_file.is_file():
        problems.append(f"{label}: holidays_file: {settings.holidays_file} is not a file")
    else:
        try:
            HolidayCalendar.load(settings.holidays_file)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return settings


# --- the admin overlay ------------------------------------------------------------------------

OVERLAY_NAME = "riskman.admin.yaml"
OVERLAY_KEYS: tuple[str, ...] = (
    "rules",
    "accounts",
    "daily_reset",
    "timezone",
    "admin",
    "holidays_file",
)
"""What the admin overlay may set (of `admin`, only `unlock_delay`): never where the
database, the password hash, the socket or the gateway are."""


def merge_overlay(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """The file's data with the overlay over it: mappings merge key by key, anything else
    (a list such as `accounts`, a value, an explicit null) replaces what the file says."""
    return _deep_merge(base, overlay)


def read_overlay(path: Path) -> dict[str, Any] | None:
    """The admin overlay's data, relative paths made absolute against its folder; None when
    there is none. Raises OSError when it cannot be read (PermissionError: another user's
    state folder) and ConfigError naming the file for a key it must not hold."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not os.access(path, os.R_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
    try:
        data = read_yaml(path)
    except YamlProblem as exc:
        raise ConfigError([f"{path}: {exc.key}: {exc.reason}"]) from None
    problems = [
        f"{path}: {key}: not allowed in the admin overlay (it holds only "
        "rules, accounts, daily_reset, timezone, admin.unlock_delay and holidays_file)"
        for key in data
        if key not in OVERLAY_KEYS
    ]
    admin = data.get("admin")
    if isinstance(admin, Mapping):
        problems += [
            f"{path}: admin.{key}: not allowed in the admin overlay (only admin.unlock_delay)"
            for key in admin
            if key != "unlock_delay"
        ]
    if problems:
        raise ConfigError(problems)
    holidays = data.get("holidays_file")
    if isinstance(holidays, str) and holidays.strip():
        data["holidays_file"] = str(_resolve(path.resolve().parent, Path(holidays)))
    return data


def overlay_keys(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The keys an overlay sets, as dotted paths (a list counts as one key)."""
    keys: list[str] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            keys += overlay_keys(value, f"{name}.")
        else:
            keys.append(name)
    return keys

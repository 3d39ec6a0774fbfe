"""RULE-006 trade_frequency_limit: more trades in the rolling minute / hour / session than
allowed starts a cooldown (no new exposure; working entry orders are cancelled; open positions
stay, as on TopstepX).

A trade is one filled order, counted by MOD-008 at its first fill's own timestamp; with
`count_trades_as: fills` (TopstepX's way) every fill counts, entries and exits alike. Each window
is judged at the fills themselves, not at the moment riskman hears of them: a fill replayed
after a reconnect is put back in its place in time, and a window it made too full starts a
cooldown that ends at that window's last fill + the window's cooldown (`until_reset`: the
daily reset after it). A cooldown that would already be over is not started. When several
windows are too full, the cooldown that ends last wins.

Only a new trade can breach this rule, so a check (start-up, config change, reset) does
nothing: cooldowns already set are restored by MOD-002, and re-deriving them from old fills
would undo a cooldown an admin cleared.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime, timedelta

from riskman.config import UNTIL_RESET
from riskman.core.intents import Category, Intent
from riskman.core.rules import Rule, RuleContext, TradeTrigger, Trigger
from riskman.core.views import RuleStatus


@dataclass(frozen=True, slots=True)
class Window:
    key: str
    """`per_minute`, `per_hour`, `per_session`: the limit's key and its cooldown's key."""
    span: timedelta | None
    """None: the whole session (since the last daily reset)."""
    label: str
    phrase: str


WINDOWS = (
    Window("per_minute", timedelta(minutes=1), "min", "within a minute"),
    Window("per_hour", timedelta(hours=1), "h", "within an hour"),
    Window("per_session", None, "session", "this session"),
)


def cooldown_end(ctx: RuleContext, start: datetime, duration: float | str) -> datetime:
    """When a cooldown of `duration` seconds (or `until_reset`) that began at `start` ends."""
    if duration == UNTIL_RESET:
        return ctx.reset_schedule.next_reset(start)
    return start + timedelta(seconds=float(duration))


def fmt_duration(duration: float | str) -> str:
    """`until the daily reset`, `for 45s`, `for 5m`, `for 1h 30m`."""
    if duration == UNTIL_RESET:
        return "until the daily reset"
    seconds = round(float(duration))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return "for " + (" ".join(parts) or "0s")


def held_until(rule: Rule, account_id: int) -> datetime | None:
    """The end of the account cooldown `rule` holds now, if any."""
    for lock in rule.ctx.lockouts.get_lockout_info(account_id):
        if lock.rule == rule.id and lock.symbol is None:
            return lock.until
    return None


def latest_breach(
    times: list[datetime], fill_at: datetime, span: timedelta | None, limit: int
) -> tuple[datetime, int] | None:
    """Of the windows that contain the fill at `fill_at`, the latest holding more than `limit`
    trades: (the time of its last trade, its count). `times` is sorted.

    A rolling window of `span` ending at a trade holds the trades in (end - span, end], like
    MOD-008's counts. Windows that contain the fill end at a trade in [fill_at, fill_at + span).
    """
    latest = None
    for index in range(bisect.bisect_left(times, fill_at), len(times)):
        end = times[index]
        if span is not None and end >= fill_at + span:
            break
        upto = bisect.bisect_right(times, end)
        count = upto - (0 if span is None else bisect.bisect_right(times, end - span))
        if count > limit:
            latest = (end, count)
    return latest


class TradeFrequencyLimit(Rule):
    id = "RULE-006"
    key = "trade_frequency_limit"
    title = "Trade frequency"
    category = Category.COOLDOWN
    triggers = frozenset({TradeTrigger})

    def evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        if not isinstance(trigger, TradeTrigger):
            return []
        cfg = self.cfg(account_id)
        trade = trigger.effect.trade
        if cfg.count_trades_as == "fills":
            # Every fill of the trader counts (not riskman's own, not a replayed one).
            if not trigger.effect.is_new or not self.ctx.counter.counted_fill(account_id, trade.id):
                return []
            times = self.ctx.counter.fill_times(account_id)
            noun = "fills"
        else:
            # `counts` is None when the fill added no trade (a further partial fill of a
            # counted order, a fill from before the session, a voided fill, riskman's own).
            if trigger.counts is None:
                return []
            times = self.ctx.counter.trade_times(account_id)
            noun = "trades"
        fill_at = trade.creation_timestamp
        chosen: tuple[datetime, str] | None = None
        for window in WINDOWS:
            limit: int | None = getattr(cfg, window.key)
            if limit is None:
                continue
            breach = latest_breach(times, fill_at, window.span, limit)
            if breach is None:
                continue
            at, count = breach
            duration: float | str = getattr(cfg.cooldowns, window.key)
            end = cooldown_end(self.ctx, at, duration)
            if chosen is None or end > chosen[0]:
                reason = (
                    f"{count} {noun} {window.phrase} (limit {limit}): "
                    f"cooldown {fmt_duration(duration)}"
                )
                chosen = (end, reason)
        if chosen is None:
            return []
        end, reason = chosen
        if end <= self.ctx.now():
            return []  # an old fill replayed: that cooldown would already be over
        held = held_until(self, account_id)
        if held is not None and held >= end:
            return []  # already cooling down at least that long
        return self.cooldown(account_id, reason, end)

    def status(self, account_id: int) -> RuleStatus:
        cfg = self.cfg(account_id)
        if cfg.count_trades_as == "fills":
            counts = self.ctx.counter.get_fill_counts(account_id)
        else:
            counts = self.ctx.counter.get_trade_counts(account_id)
        values = (counts.minute, counts.hour, counts.session)
        parts = []
        limits = []
        used = []
        for window, count in zip(WINDOWS, values, strict=True):
            limit: int | None = getattr(cfg, window.key)
            if limit is None:
                parts.append(f"{count} {window.label}")
                limits.append(f"- {window.label}")
            else:
                parts.append(f"{count}/{limit} {window.label}")
                limits.append(f"{limit} {window.label}")
                used.append(count / limit)
        cooldowns = " · ".join(
            fmt_duration(getattr(cfg.cooldowns, window.key)).removeprefix("for ")
            for window in WINDOWS
        )
        return RuleStatus(
            value=" · ".join(parts),
            limit=" · ".join(limits),
            used=max(used) if used else None,
            detail=f"cooldowns: {cooldowns}"
            + ("; every fill counts" if cfg.count_trades_as == "fills" else ""),
        )

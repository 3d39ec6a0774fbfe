"""How numbers, times and durations look on a trader's screen (one place: every widget agrees)."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal

from riskman.core.localtime import clock_time as clock_time
from riskman.core.localtime import local_times as local_times
from riskman.symbols import display_symbol, root_of

CENT = Decimal("0.01")

# Limit-used thresholds of the spec: green below 70 %, yellow below 90 %, red from 90 %.
WARN_AT = 0.70
DANGER_AT = 0.90


def money(value: Decimal | None, *, signed: bool = False) -> str:
    """`-$312.50`, `$49,687.50` (`+$12.00` with `signed`); an em dash when unknown."""
    if value is None:
        return "—"
    amount = value.quantize(CENT, rounding=ROUND_HALF_EVEN)
    if amount == 0:
        amount = abs(amount)  # never "-$0.00"
    sign = "-" if amount < 0 else ("+" if signed and amount > 0 else "")
    return f"{sign}${abs(amount):,.2f}"


def price(value: Decimal | None) -> str:
    if value is None:
        return "—"
    return f"{value:,f}"


def level(used: float | None) -> str:
    """The colour class of a limit-used fraction: ok, warn or danger."""
    if used is None or used < WARN_AT:
        return "ok"
    return "warn" if used < DANGER_AT else "danger"


def percent(used: float | None) -> str:
    if used is None:
        return "—"
    return f"{used * 100:.0f}%"


def countdown(seconds: float) -> str:
    """Time left, rounded up (a countdown shows 0:01 until it is really over): `0:42`,
    `12:05`, `2:03:09`."""
    whole = max(0, math.ceil(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def span(seconds: float) -> str:
    """A coarse duration for things far away or long ago: `45s`, `12m`, `3h 05m`, `2d 4h`."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d {whole % 86400 // 3600}h"


def age(seconds: float | None) -> str:
    """How old a quote or event is: `0.4s`, `12s`, `3m`; `never` when there was none."""
    if seconds is None:
        return "never"
    if seconds < 10:
        return f"{seconds:.1f}s"
    return span(seconds)


def contract_label(target: str) -> str:
    """A contract id as the symbol a trader knows (`CON.F.US.EP.Z26` -> `ES Z26`)."""
    if target.startswith("CON."):
        return f"{display_symbol(root_of(target))} {target.split('.')[-1]}"
    return target

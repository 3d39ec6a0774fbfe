"""Contracts the simulator trades, with the CME tick specifications (PROJECTX_API.md §4.3).

Prices are `Decimal` everywhere; a price is valid only on its contract's tick grid. Fees are the
per-contract, per-side round numbers a TopstepX account is charged, close enough for a demo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation

from riskman.core.models import Contract

PriceLike = Decimal | int | float | str

CENT = Decimal("0.01")


def to_decimal(value: PriceLike) -> Decimal:
    """A finite `Decimal` from a control-API argument (floats via `repr`: 0.1 stays 0.1)."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a price")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite price: {value!r}")
        return Decimal(repr(value))
    try:
        result = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"not a price: {value!r}") from exc
    if not result.is_finite():
        raise ValueError(f"not a finite price: {value!r}")
    return result


@dataclass(frozen=True, slots=True)
class ContractSpec:
    id: str
    name: str
    description: str
    symbol_id: str
    tick_size: Decimal
    tick_value: Decimal
    fee: Decimal
    start_price: Decimal

    def model(self) -> Contract:
        return Contract(
            id=self.id,
            name=self.name,
            description=self.description,
            tick_size=self.tick_size,
            tick_value=self.tick_value,
            active_contract=True,
            symbol_id=self.symbol_id,
        )

    def is_aligned(self, price: Decimal) -> bool:
        return price % self.tick_size == 0

    def round_to_tick(self, price: Decimal) -> Decimal:
        """The nearest price on the tick grid (half a tick rounds up)."""
        ticks = (price / self.tick_size).to_integral_value(rounding=ROUND_HALF_UP)
        return ticks * self.tick_size

    def ticks_between(self, low: Decimal, high: Decimal) -> int:
        """Whole ticks in `high - low`, truncated toward zero (how the gateway turns a price
        distance into a trail distance)."""
        return int((high - low) / self.tick_size)

    def offset(self, price: Decimal, ticks: int) -> Decimal:
        return price + self.tick_size * ticks

    def pnl(self, entry: Decimal, exit_price: Decimal, signed_size: int) -> Decimal:
        """Gross P&L in dollars of `signed_size` contracts (positive = long) from entry to exit.

        The average entry can sit between ticks, so the result is rounded to the cent.
        """
        raw = (exit_price - entry) / self.tick_size * self.tick_value * signed_size
        return raw.quantize(CENT, rounding=ROUND_HALF_EVEN)


_MONTHS = {
    "F": "January",
    "G": "February",
    "H": "March",
    "J": "April",
    "K": "May",
    "M": "June",
    "N": "July",
    "Q": "August",
    "U": "September",
    "V": "October",
    "X": "November",
    "Z": "December",
}


def _spec(
    root: str,
    expiry: str,
    ticker: str,
    product: str,
    tick_size: str,
    tick_value: str,
    fee: str,
    start: str,
) -> ContractSpec:
    month, year = expiry[0], expiry[1:]
    return ContractSpec(
        id=f"CON.F.US.{root}.{expiry}",
        # Contract names use the exchange ticker and a one-digit year (`NQH5`).
        name=f"{ticker}{month}{year[-1]}",
        description=f"{product}: {_MONTHS[month]} 20{year}",
        symbol_id=f"F.US.{root}",
        tick_size=Decimal(tick_size),
        tick_value=Decimal(tick_value),
        fee=Decimal(fee),
        start_price=Decimal(start),
    )


DEFAULT_CONTRACTS: tuple[ContractSpec, ...] = (
    _spec("MNQ", "Z26", "MNQ", "Micro E-mini Nasdaq-100", "0.25", "0.50", "0.37", "24500.00"),
    _spec("ENQ", "Z26", "NQ", "E-mini Nasdaq-100", "0.25", "5.00", "1.40", "24500.00"),
    _spec("EP", "Z26", "ES", "E-mini S&P 500", "0.25", "12.50", "1.40", "6650.00"),
    _spec("MES", "Z26", "MES", "Micro E-mini S&P 500", "0.25", "1.25", "0.37", "6650.00"),
    _spec("RTY", "Z26", "RTY", "E-mini Russell 2000", "0.10", "5.00", "1.40", "2400.0"),
    _spec("M2K", "Z26", "M2K", "Micro E-mini Russell 2000", "0.10", "0.50", "0.37", "2400.0"),
    _spec("YM", "Z26", "YM", "E-mini Dow ($5)", "1", "5.00", "1.40", "46000"),
    _spec("MYM", "Z26", "MYM", "Micro E-mini Dow", "1", "0.50", "0.37", "46000"),
    _spec("CLE", "F27", "CL", "Crude Oil", "0.01", "10.00", "1.50", "64.50"),
    _spec("MCLE", "F27", "MCL", "Micro WTI Crude Oil", "0.01", "1.00", "0.50", "64.50"),
    _spec("GCE", "G27", "GC", "Gold", "0.10", "10.00", "1.60", "3450.0"),
    _spec("MGC", "G27", "MGC", "Micro Gold", "0.10", "1.00", "0.50", "3450.0"),
)

"""Quotes for the simulated contracts: a seeded random walk in whole ticks, plus bar history.

Bid and ask are one tick apart and the last trade sits on one of them: after an up-tick the
buyer lifted the offer (last = ask), after a down-tick the seller hit the bid (last = bid).
Each contract has its own random generator, so one contract's sequence does not depend on how
often the others tick.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from riskman.core.enums import TradeLogType
from riskman.core.models import MarketTrade, Quote

from .contracts import ContractSpec, PriceLike, to_decimal

# Up to this many price points per contract are kept for `History/retrieveBars`.
HISTORY_LIMIT = 200_000

MAX_PRICE = Decimal(1_000_000_000)
# Steps of the walk in ticks: mostly small moves, now and then none.
_STEPS = (-2, -1, -1, -1, 0, 1, 1, 1, 2)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# ISO weeks start on Monday; 1970-01-05 is the first Monday after the epoch.
_FIRST_MONDAY = datetime(1970, 1, 5, tzinfo=UTC)
_UNIT_SECONDS = {1: 1, 2: 60, 3: 3600, 4: 86400}


def utc_now() -> datetime:
    return datetime.now(UTC)


class UnknownContract(KeyError):
    """The contract id is not one the simulator lists."""


@dataclass(slots=True)
class QuoteState:
    contract: ContractSpec
    last: Decimal
    bid: Decimal
    ask: Decimal
    open: Decimal
    high: Decimal
    low: Decimal
    volume: int
    updated: datetime
    aggressor: TradeLogType = TradeLogType.BUY

    def model(self) -> Quote:
        change = self.last - self.open
        percent = (change / self.open * 100).quantize(Decimal("0.0001")) if self.open else None
        return Quote(
            symbol=self.contract.symbol_id,
            symbol_name=self.contract.name,
            last_price=self.last,
            best_bid=self.bid,
            best_ask=self.ask,
            change=change,
            change_percent=percent,
            open=self.open,
            high=self.high,
            low=self.low,
            volume=self.volume,
            last_updated=self.updated,
            timestamp=self.updated,
        )


@dataclass(frozen=True, slots=True)
class Bar:
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int


@dataclass(frozen=True, slots=True)
class _Tick:
    at: datetime
    price: Decimal
    volume: int
    aggressor: TradeLogType


class Market:
    def __init__(
        self,
        contracts: Iterable[ContractSpec],
        seed: int,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._now = now
        self.contracts: dict[str, ContractSpec] = {c.id: c for c in contracts}
        self.halted: set[str] = set()
        self._rngs = {cid: random.Random(f"{seed}:{cid}") for cid in self.contracts}
        self._history: dict[str, deque[_Tick]] = {
            cid: deque(maxlen=HISTORY_LIMIT) for cid in self.contracts
        }
        started = now()
        self._quotes: dict[str, QuoteState] = {
            c.id: QuoteState(
                contract=c,
                last=c.start_price,
                bid=c.start_price,
                ask=c.start_price + c.tick_size,
                open=c.start_price,
                high=c.start_price,
                low=c.start_price,
                volume=0,
                updated=started,
            )
            for c in self.contracts.values()
        }

    def contract(self, contract_id: str) -> ContractSpec:
        try:
            return self.contracts[contract_id]
        except KeyError:
            raise UnknownContract(contract_id) from None

    def quote(self, contract_id: str) -> QuoteState:
        try:
            return self._quotes[contract_id]
        except KeyError:
            raise UnknownContract(contract_id) from None

    def set_price(
        self,
        contract_id: str,
        last: PriceLike,
        bid: PriceLike | None = None,
        ask: PriceLike | None = None,
        volume: int = 1,
    ) -> QuoteState:
        """Move the market. Prices are rounded to the nearest tick; a missing bid is the last
        price and a missing ask is one tick above the bid."""
        contract = self.contract(contract_id)
        new_last = contract.round_to_tick(to_decimal(last))
        if bid is not None:
            new_bid = contract.round_to_tick(to_decimal(bid))
        elif ask is not None:
            new_bid = contract.round_to_tick(to_decimal(ask)) - contract.tick_size
        else:
            new_bid = new_last
        new_ask = (
            contract.round_to_tick(to_decimal(ask))
            if ask is not None
            else new_bid + contract.tick_size
        )
        if min(new_last, new_bid) <= 0 or max(new_last, new_ask) > MAX_PRICE:
            raise ValueError("prices must be positive and below 1e9")
        if new_bid >= new_ask:
            raise ValueError(f"crossed market: bid {new_bid} >= ask {new_ask}")
        state = self._quotes[contract_id]
        aggressor = TradeLogType.SELL if new_last < state.last else TradeLogType.BUY
        return self._apply(state, new_last, new_bid, new_ask, volume, aggressor)

    def step(self, contract_id: str) -> QuoteState:
        """One step of the random walk."""
        state = self.quote(contract_id)
        contract = state.contract
        rng = self._rngs[contract_id]
        ticks = rng.choice(_STEPS)
        last = max(state.last + contract.tick_size * ticks, contract.tick_size)
        if last > state.last:
            bid, ask, aggressor = last - contract.tick_size, last, TradeLogType.BUY
        elif last < state.last:
            bid, ask, aggressor = last, last + contract.tick_size, TradeLogType.SELL
        else:
            bid, ask, aggressor = state.bid, state.ask, state.aggressor
        if bid <= 0:
            bid, ask = last, last + contract.tick_size
        return self._apply(state, last, bid, ask, rng.randint(1, 5), aggressor)

    def _apply(
        self,
        state: QuoteState,
        last: Decimal,
        bid: Decimal,
        ask: Decimal,
        volume: int,
        aggressor: TradeLogType,
    ) -> QuoteState:
        now = self._now()
        state.last, state.bid, state.ask = last, bid, ask
        state.high = max(state.high, last)
        state.low = min(state.low, last)
        state.volume += volume
        state.updated = now
        state.aggressor = aggressor
        self._history[state.contract.id].append(_Tick(now, last, volume, aggressor))
        return state

    def last_trade(self, contract_id: str) -> MarketTrade:
        """The most recent market trade (what `GatewayTrade` carries)."""
        state = self.quote(contract_id)
        history = self._history[contract_id]
        volume = history[-1].volume if history else 0
        return MarketTrade(
            symbol_id=state.contract.symbol_id,
            price=state.last,
            timestamp=state.updated,
            type=state.aggressor,
            volume=volume,
        )

    def bars(
        self,
        contract_id: str,
        start: datetime,
        end: datetime,
        unit: int,
        unit_number: int,
        limit: int,
        include_partial: bool,
    ) -> list[Bar]:
        """Bars from the recorded price history, newest first (as the gateway returns them)."""
        ticks = [t for t in self._history[contract_id] if start <= t.at <= end]
        buckets: dict[object, list[_Tick]] = {}
        bucket_starts: dict[object, datetime] = {}
        for index, tick in enumerate(ticks):
            key, bucket_start = _bucket(tick.at, index, unit, unit_number)
            if key not in buckets:
                buckets[key] = []
                bucket_starts[key] = bucket_start
            buckets[key].append(tick)
        bars = [
            Bar(
                start=bucket_starts[key],
                open=group[0].price,
                high=max(t.price for t in group),
                low=min(t.price for t in group),
                close=group[-1].price,
                volume=sum(t.volume for t in group),
            )
            for key, group in buckets.items()
        ]
        if bars and not include_partial:
            last_key = next(reversed(buckets))
            if _is_partial(last_key, buckets[last_key], unit, unit_number, self._now()):
                bars.pop()
        return list(reversed(bars[-limit:]))


def _bucket(at: datetime, index: int, unit: int, number: int) -> tuple[object, datetime]:
    if unit in _UNIT_SECONDS:
        width = _UNIT_SECONDS[unit] * number
        slot = int((at - _EPOCH).total_seconds()) // width
        return slot, _EPOCH + timedelta(seconds=slot * width)
    if unit == 5:
        slot = (at - _FIRST_MONDAY).days // (7 * number)
        return slot, _FIRST_MONDAY + timedelta(days=7 * number * slot)
    if unit == 6:
        slot = (at.year * 12 + at.month - 1) // number
        months = slot * number
        return slot, datetime(months // 12, months % 12 + 1, 1, tzinfo=UTC)
    # Tick bars: every `number` price points make one bar.
    return index // number, at


def _is_partial(key: object, group: list[_Tick], unit: int, number: int, now: datetime) -> bool:
    if unit == 7:
        return len(group) < number
    # A time bar is complete once the next bar's period has started.
    next_key, _ = _bucket(now, 0, unit, number)
    return key == next_key

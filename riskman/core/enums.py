"""The gateway's enumerations (PROJECTX_API.md §4.1). Standard library only: the payload models,
the intents and the read-only views all use them.
"""

from __future__ import annotations

from enum import IntEnum


class OrderType(IntEnum):
    UNKNOWN = 0
    LIMIT = 1
    MARKET = 2
    STOP_LIMIT = 3
    STOP = 4
    TRAILING_STOP = 5
    JOIN_BID = 6
    JOIN_ASK = 7

    @property
    def is_stop(self) -> bool:
        return self in (OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP)


class OrderSide(IntEnum):
    BID = 0  # buy
    ASK = 1  # sell

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell."""
        return 1 if self is OrderSide.BID else -1

    @property
    def label(self) -> str:
        return "BUY" if self is OrderSide.BID else "SELL"


class OrderStatus(IntEnum):
    NONE = 0
    OPEN = 1
    FILLED = 2
    CANCELLED = 3
    EXPIRED = 4
    REJECTED = 5
    PENDING = 6
    PENDING_CANCELLATION = 7
    SUSPENDED = 8

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def is_working(self) -> bool:
        return self in _WORKING


_TERMINAL = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.REJECTED}
)
_WORKING = frozenset(
    {OrderStatus.OPEN, OrderStatus.PENDING, OrderStatus.PENDING_CANCELLATION, OrderStatus.SUSPENDED}
)


class PositionType(IntEnum):
    UNDEFINED = 0
    LONG = 1
    SHORT = 2

    @property
    def sign(self) -> int:
        return {PositionType.LONG: 1, PositionType.SHORT: -1}.get(self, 0)


class TradeLogType(IntEnum):
    BUY = 0
    SELL = 1


# --- field types ----------------------------------------------------------------------------

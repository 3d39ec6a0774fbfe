"""What the engine knows about an account, as the rules are handed it: a position with when it
opened and grew, what one position or order update changed, and what one fill changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from riskman.core.models import Order, Position, Trade
from riskman.symbols import root_of


@dataclass(frozen=True, slots=True)
class PositionState:
    position: Position
    opened: datetime
    """When riskman first saw it open (from flat, or after a reversal)."""
    grown: datetime
    """When its size last increased (for "newest first" reductions)."""

    @property
    def account_id(self) -> int:
        return self.position.account_id

    @property
    def contract_id(self) -> str:
        return self.position.contract_id

    @property
    def size(self) -> int:
        return self.position.size

    @property
    def sign(self) -> int:
        return self.position.type.sign

    @property
    def signed_size(self) -> int:
        return self.position.signed_size

    @property
    def root(self) -> str:
        return root_of(self.position.contract_id)


@dataclass(frozen=True, slots=True)
class PositionChange:
    before: PositionState | None
    after: PositionState | None

    @property
    def opened(self) -> bool:
        """Opened from flat, or reversed to the other side."""
        return self.after is not None and (
            self.before is None or self.before.sign != self.after.sign
        )

    @property
    def grew(self) -> bool:
        """Opened, or the same side got bigger."""
        if self.after is None:
            return False
        return self.opened or (self.before is not None and self.after.size > self.before.size)

    @property
    def closed(self) -> bool:
        return self.before is not None and self.after is None

    @property
    def changed(self) -> bool:
        if self.before is None or self.after is None:
            return self.before is not self.after
        return self.before.position != self.after.position


@dataclass(frozen=True, slots=True)
class OrderChange:
    before: Order | None
    after: Order | None
    """None when the order ended (filled, cancelled, expired, rejected)."""
    ended: Order | None = None
    """The terminal update, when the order ended."""

    @property
    def is_new(self) -> bool:
        return self.before is None and self.after is not None


@dataclass(frozen=True, slots=True)
class TradeEffect:
    """What one fill changed."""

    trade: Trade
    day: date
    is_new: bool
    """First time this fill is seen (False: it was voided after being counted)."""
    realized_delta: Decimal
    fills_delta: int


@dataclass(frozen=True, slots=True)
class OpenPnl:
    """Open P&L of an account: the sum over positions that have a fresh quote."""

    total: Decimal
    priced: int
    """Positions with a usable quote and contract."""
    unpriced: tuple[str, ...]
    """Contracts with a position but no fresh quote or no tick data: not in `total`."""

    @property
    def complete(self) -> bool:
        return not self.unpriced


@dataclass(frozen=True, slots=True)
class ClosingFill:
    """A stored closing fill that is not voided: its realized P&L net of its own fees."""

    account_id: int
    contract_id: str
    at: datetime
    net: Decimal

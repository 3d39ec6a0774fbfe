"""One consistent view of a fill, whatever order its events arrive in.

The gateway reports one fill as four events: the order update, the trade, the position update
and the account (balance) update, in that order on TopstepX, but a reconnect, a split frame or
a lost event can change that. Between them the engine would see a half-done fill: after the
closing trade and before the position update, a closed loss counts twice (realized, and still
open); after the position update and before the trade, a closed profit is in neither.

So the engine's view is always *as of the fills it has seen*:

- a trade moves the engine's position at once, the way the gateway will (`apply_fill`);
- a position update only confirms: its size change is matched against the fills seen. When
  they explain it, the gateway's position is taken as is (its exact average price). When a
  change reduces, closes or reverses a position and no fill seen explains it, it waits for its
  trade (the realized P&L comes with the trade): the position keeps being valued at the market
  until then. A change that only adds exposure is taken at once (nothing is realized by it).
- a balance update is matched the same way against the fills' net P&L: a change no fill
  explains waits for its trade while positions are open (it would count a closing loss that
  the open P&L still holds).

What still waits after `SETTLE_AFTER` is settled by the gateway's word: an unexplained
position or balance is believed; a fill whose position update never came makes the engine
re-read the positions over REST. A REST read of positions is the truth and clears the book.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from riskman.core.enums import PositionType
from riskman.core.models import Position, Trade

SETTLE_AFTER = 1.0
"""Seconds an update that no fill explains (or a fill no update confirms) may wait."""
AVERAGE_QUANTUM = Decimal("0.000000001")
"""The gateway prints average prices with nine fractional digits."""
ZERO = Decimal(0)


def _sign(value: int | Decimal) -> int:
    return (value > 0) - (value < 0)


def apply_fill(
    position: Position | None,
    account_id: int,
    contract_id: str,
    delta: int,
    price: Decimal,
    at: datetime | None,
) -> Position | None:
    """The position after a fill of `delta` contracts (signed: + buys) at `price`.

    The same arithmetic as the gateway: an addition moves the average to the weighted mean; a
    reduction keeps it; a fill that crosses zero opens the rest the other way at its price.
    """
    held = 0 if position is None else position.signed_size
    after = held + delta
    if after == 0:
        return None
    if held == 0 or _sign(held) != _sign(after):
        return Position(
            id=0,
            account_id=account_id,
            contract_id=contract_id,
            creation_timestamp=at,
            type=PositionType.LONG if after > 0 else PositionType.SHORT,
            size=abs(after),
            average_price=price,
        )
    assert position is not None
    if abs(after) > abs(held):
        total = position.average_price * abs(held) + price * abs(delta)
        average = (total / abs(after)).quantize(AVERAGE_QUANTUM)
        return position.model_copy(update={"size": abs(after), "average_price": average})
    return position.model_copy(update={"size": abs(after)})


@dataclass(slots=True)
class Part:
    """(The rest of) a fill seen but not yet in a position update."""

    delta: int
    price: Decimal
    at: datetime | None


@dataclass(slots=True)
class PositionBook:
    """The gateway's word on one (account, contract) against the fills seen."""

    reported: Position | None = None
    """The last position the gateway reported (None: flat)."""
    pending: list[Part] = field(default_factory=list)
    """Fills seen that `reported` does not include yet, in order."""
    ahead: int = 0
    """Signed size `reported` changed by that no fill seen explains yet."""
    held: bool = False
    """`ahead` is not in the engine's position yet (it reduces: it waits for its trade)."""
    since: float | None = None
    """`Clock.monotonic()` when something started waiting."""

    @property
    def settled(self) -> bool:
        return not self.pending and self.ahead == 0

    def projected(self, account_id: int, contract_id: str) -> Position | None:
        """`reported` with the pending fills applied: the position as of the fills seen."""
        position = self.reported
        for part in self.pending:
            position = apply_fill(
                position, account_id, contract_id, part.delta, part.price, part.at
            )
        return position

    def fill(self, trade: Trade) -> int:
        """A new fill: explain what the gateway reported ahead of it; returns what is left
        (the part of the fill no position update has shown yet)."""
        delta = trade.side.sign * trade.size
        if self.ahead and _sign(self.ahead) == _sign(delta):
            used = _sign(delta) * min(abs(delta), abs(self.ahead))
            self.ahead -= used
            delta -= used
            if self.ahead == 0:
                self.held = False
        return delta

    def report(self, position: Position) -> int:
        """A position update: match its size change against the pending fills; returns the
        change no fill seen explains (it is added to `ahead`)."""
        before = 0 if self.reported is None else self.reported.signed_size
        self.reported = None if position.is_closed else position
        change = (0 if position.is_closed else position.signed_size) - before
        while change and self.pending and _sign(self.pending[0].delta) == _sign(change):
            head = self.pending[0]
            if abs(head.delta) <= abs(change):
                change -= head.delta
                self.pending.pop(0)
            else:
                head.delta -= change
                change = 0
        self.ahead += change
        if self.ahead == 0:
            self.held = False
        return change

    def truth(self, position: Position | None) -> None:
        self.reported = position
        self.pending.clear()
        self.ahead = 0
        self.held = False
        self.since = None


@dataclass(slots=True)
class BalanceBook:
    """The gateway's balance against the net P&L of the fills seen, for one account."""

    pending: Decimal = ZERO
    """Net P&L of fills seen that the reported balance does not include yet."""
    ahead: Decimal = ZERO
    """Balance change the gateway reported that no fill seen explains yet."""
    held: Decimal = ZERO
    """The part of `ahead` not believed yet (it came while positions were open)."""
    since: float | None = None

    def offset(self) -> Decimal:
        """What to add to the reported balance for the balance as of the fills seen."""
        return self.pending - self.held

    def report(self, change: Decimal, *, hold: bool) -> None:
        self.ahead += change
        if hold:
            self.held += change
        self.match()

    def fill(self, net: Decimal) -> None:
        self.pending += net
        self.match()

    def match(self) -> None:
        if self.pending and self.ahead and _sign(self.pending) == _sign(self.ahead):
            used = _sign(self.ahead) * min(abs(self.pending), abs(self.ahead))
            self.pending -= used
            self.ahead -= used
            if self.held and _sign(self.held) == _sign(used):
                self.held = _sign(self.held) * max(ZERO, abs(self.held) - abs(used))
        if not self.ahead:
            self.held = ZERO
            self.since = None

    def clear(self) -> None:
        self.pending = ZERO
        self.ahead = ZERO
        self.held = ZERO
        self.since = None

"""MOD-006 Quote tracker: the last price, bid and ask per contract, and how old they are."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from riskman.core.clock import Clock
from riskman.core.models import Quote


@dataclass(slots=True)
class QuoteState:
    last: Decimal | None
    bid: Decimal | None
    ask: Decimal | None
    received: float
    """Clock.monotonic() of the last update."""
    source: str = "hub"
    """"rest": the last price came from REST bars because the hub's quotes stopped."""


class QuoteTracker:
    def __init__(self, clock: Clock, stale_after: float = 10.0) -> None:
        self._clock = clock
        self.stale_after = stale_after
        self._quotes: dict[str, QuoteState] = {}
        self.last_update: float | None = None

    def update_quote(self, contract_id: str, quote: Quote, *, source: str = "hub") -> QuoteState:
        """Merge a quote: a field the update lacks keeps its previous value.

        A REST price (`source="rest"`) carries only a last price: the old bid and ask are
        dropped with it, so the mark is that price and not a frozen bid from the stale hub.
        """
        now = self._clock.monotonic()
        state = self._quotes.get(contract_id)
        if state is None:
            state = QuoteState(quote.last_price, quote.best_bid, quote.best_ask, now, source)
            self._quotes[contract_id] = state
        elif source == "rest":
            state.last = quote.last_price
            state.bid = state.ask = None
            state.received = now
            state.source = source
        else:
            state.source = source
            if quote.last_price is not None:
                state.last = quote.last_price
            if quote.best_bid is not None:
                state.bid = quote.best_bid
            if quote.best_ask is not None:
                state.ask = quote.best_ask
            state.received = now
        if source == "hub":
            self.last_update = now  # the age of the hub's quotes, which REST prices do not hide
        return state

    def get(self, contract_id: str) -> QuoteState | None:
        return self._quotes.get(contract_id)

    def get_last_price(self, contract_id: str) -> Decimal | None:
        state = self._quotes.get(contract_id)
        return None if state is None else state.last

    def get_mark(self, contract_id: str, sign: int) -> Decimal | None:
        """The price a position could be closed at: the bid for a long, the ask for a short
        (a conservative liquidation estimate), else the last price."""
        state = self._quotes.get(contract_id)
        if state is None:
            return None
        side_price = state.bid if sign > 0 else state.ask
        return side_price if side_price is not None else state.last

    def get_quote_age(self, contract_id: str) -> float | None:
        state = self._quotes.get(contract_id)
        return None if state is None else self._clock.monotonic() - state.received

    def is_quote_stale(self, contract_id: str, max_age: float | None = None) -> bool:
        """True when there is no quote or it is older than `max_age` (default stale_after)."""
        age = self.get_quote_age(contract_id)
        return age is None or age > (self.stale_after if max_age is None else max_age)

    def last_update_age(self) -> float | None:
        """Seconds since any quote arrived from the market hub."""
        return None if self.last_update is None else self._clock.monotonic() - self.last_update

    def forget(self, contract_id: str) -> None:
        self._quotes.pop(contract_id, None)

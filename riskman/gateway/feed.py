"""The live gateway feed: both hubs, supervised, feeding parsed events into the engine.

Order after every (re)connect of the user hub (PROJECTX_API.md §3.4; there is no replay):

1. ``SubscribeAccounts``, then ``SubscribeOrders/Positions/Trades(accountId)`` for every
   guarded account (all subscriptions awaited: the server completes each invocation);
2. REST reconcile: ``Account/search``, then per account ``Position/searchOpen``,
   ``Order/searchOpen`` and ``Trade/search`` from ``sink.fills_since()``, each handed to
   ``sink.reconcile``;
3. only then is the user feed CONNECTED (trusted).

Subscribing before reading REST closes the gap: anything that happens after the subscription
arrives as an event, anything before it is in the REST answer. Events that arrive while the
reconcile runs are submitted as they come (they are facts); the snapshot carries the time its
reads were sent so the engine can order the two.

While the user feed is not trusted (connecting, reconnecting, stale, down) positions and orders
are polled over REST every ``stale_poll_interval`` so a breach is still caught, and the log says
so (a WARNING when it starts, a reminder every minute, INFO when the feed is trusted again).

The market hub subscribes ``SubscribeContractQuotes`` for ``sink.quote_contracts()`` after every
(re)connect and follows :meth:`GatewayFeed.want_quotes` live. A contract whose quotes stop for
longer than ``quote_stale_after`` (a down hub, or one that stays connected but freezes: PROJECTX_API
§3.4, project-x-py #97) is priced from ``History/retrieveBars`` every ``stale_poll_interval``
instead, so the loss rules still see the market move; those quotes are marked ``source="rest"``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from riskman.config import GatewayConfig
from riskman.core.clock import Clock, SystemClock
from riskman.core.models import (
    MARKET_EVENTS,
    USER_EVENT_MODELS,
    Account,
    Order,
    PayloadError,
    Position,
    Quote,
    Trade,
    parse_quote,
    parse_user_event,
)
from riskman.core.ports import (
    AccountEvent,
    AccountSnapshot,
    EventSink,
    GatewayEvent,
    OrderEvent,
    PositionEvent,
    QuoteEvent,
    TradeEvent,
)
from riskman.core.redaction import install_redaction
from riskman.core.views import FeedHealth, FeedState
from riskman.gateway.errors import GatewayError
from riskman.gateway.realtime import (
    HubError,
    HubEvent,
    HubInvokeError,
    HubName,
    HubSupervisor,
    HubTransport,
)
from riskman.gateway.rest import RestClient

log = logging.getLogger(__name__)
install_redaction(log)

USER_ACCOUNT_SUBSCRIPTIONS = ("SubscribeOrders", "SubscribePositions", "SubscribeTrades")
UNTRUSTED_REMINDER = 60.0
"""Seconds between the WARNINGs that say the user feed is still not trusted."""
NO_BARS_RETRY = 60.0
"""Seconds before asking again for the REST price of a contract that had no recent bar."""
SUBSCRIBE_QUOTES = "SubscribeContractQuotes"
UNSUBSCRIBE_QUOTES = "UnsubscribeContractQuotes"


class _OncePerKey:
    """Logs a recurring problem once per key, then every `every`-th time (no log floods)."""

    def __init__(self, every: int = 100) -> None:
        self._counts: dict[tuple[str, str], int] = {}
        self._every = every

    def __call__(self, level: int, key: tuple[str, str], message: str, *args: Any) -> None:
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        if count == 1 or count % self._every == 0:
            log.log(level, message + " (seen %d times)", *args, count)


class GatewayFeed:
    """Both hubs plus REST reconciliation and stale polling, feeding an :class:`EventSink`.

    Implements ``QuoteSubscriptions``. `account_ids` are the accounts to guard; empty means
    every active account (resolved again at each reconnect).
    """

    def __init__(
        self,
        rest: RestClient,
        config: GatewayConfig,
        sink: EventSink,
        account_ids: Sequence[int] = (),
        clock: Clock | None = None,
        *,
        transport_factory: Callable[[HubName], HubTransport] | None = None,
        rng: random.Random | None = None,
        quote_stale_after: float | Callable[[], float] = 10.0,
    ) -> None:
        self._rest = rest
        self._config = config
        self._sink = sink
        self._configured: tuple[int, ...] = tuple(dict.fromkeys(account_ids))
        self._accounts: tuple[int, ...] = self._configured
        self._adopting: set[asyncio.Task[None]] = set()
        self._clock: Clock = clock or SystemClock()
        self._wanted: frozenset[str] = frozenset()
        self._subscribed: set[str] = set()
        self._refused: set[str] = set()
        self._quote_lock = asyncio.Lock()
        self._quote_sync: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._pricer: asyncio.Task[None] | None = None
        # A callable follows the live setting (the admin screens can change it).
        self._quote_stale_after: Callable[[], float] = (
            quote_stale_after if callable(quote_stale_after) else lambda: quote_stale_after
        )
        self._quote_seen: dict[str, float] = {}
        """Monotonic time of each wanted contract's last hub quote (or of when it was wanted)."""
        self._rest_priced: set[str] = set()
        self._no_bars_until: dict[str, float] = {}
        """Contracts with no recent bar (market closed): not asked again before this time."""
        self._untrusted_since: float | None = None
        self._untrusted_announced = False
        self._untrusted = asyncio.Event()
        self._untrusted.set()
        self._trusted = asyncio.Event()
        self._noisy = _OncePerKey()
        self.malformed_events = 0
        """Inbound events skipped because they could not be parsed."""
        self._started = False
        self.polls = 0
        """Completed stale polls (for tests and the status screen)."""

        common: dict[str, Any] = {
            "clock": self._clock,
            "silence_timeout": config.hub_silence_timeout,
            "max_backoff": config.reconnect_max_backoff,
            "connect_timeout": max(5.0, config.request_timeout),
            "rng": rng,
        }
        factory = transport_factory
        self.user = HubSupervisor(
            "user",
            config.user_hub_url,
            rest,
            setup=self._setup_user,
            ready_detail="subscribed and reconciled",
            on_event=self._on_user_event,
            on_health=self._on_health,
            transport_factory=(lambda: factory("user")) if factory else None,
            **common,
        )
        self.market = HubSupervisor(
            "market",
            config.market_hub_url,
            rest,
            setup=self._setup_market,
            ready_detail="quotes subscribed",
            on_event=self._on_market_event,
            on_health=self._on_health,
            transport_factory=(lambda: factory("market")) if factory else None,
            **common,
        )

    def __repr__(self) -> str:
        return f"GatewayFeed(user={self.user.state.value}, market={self.market.state.value})"

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start both hubs and the stale poller. Never raises for an unreachable gateway:
        the hubs keep retrying with backoff and their health says so."""
        if self._started:
            return
        self._started = True
        self._untrusted.set()
        await self.user.start()
        await self.market.start()
        loop = asyncio.get_running_loop()
        self._poller = loop.create_task(
            self._poll_while_untrusted(), name="riskman-feed-stale-poll"
        )
        self._pricer = loop.create_task(self._price_stale_quotes(), name="riskman-feed-rest-prices")

    async def stop(self) -> None:
        """Stop both hubs and every task; returns once all of them ended."""
        self._started = False
        tasks = [t for t in (self._poller, self._pricer, self._quote_sync) if t is not None]
        self._poller = self._pricer = self._quote_sync = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(self.user.stop(), self.market.stop())

    async def __aenter__(self) -> GatewayFeed:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def health(self, hub: HubName) -> FeedHealth:
        return (self.user if hub == "user" else self.market).health()

    @property
    def trusted(self) -> bool:
        return self.user.trusted

    @property
    def guarded_accounts(self) -> tuple[int, ...]:
        return self._accounts

    async def wait_trusted(self, timeout: float | None = None) -> bool:
        """Wait until the user feed is trusted (subscribed and reconciled); False on timeout.
        Without a timeout it waits as long as it takes."""
        try:
            await asyncio.wait_for(self._trusted.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # --- QuoteSubscriptions --------------------------------------------------------------

    def want_quotes(self, contract_ids: frozenset[str]) -> None:
        """The contracts the engine needs quotes for (replaces the previous set)."""
        self._wanted = frozenset(contract_ids)
        self._note_wanted()
        self._refused &= self._wanted
        if self.market.ready and (self._quote_sync is None or self._quote_sync.done()):
            self._quote_sync = asyncio.get_running_loop().create_task(
                self._sync_quotes_live(), name="riskman-feed-quotes"
            )

    # --- user hub -------------------------------------------------------------------------

    async def _setup_user(self, hub: HubTransport) -> None:
        accounts = await self._resolve_accounts()
        await hub.invoke("SubscribeAccounts", [])
        await asyncio.gather(
            *(
                hub.invoke(method, [account_id])
                for account_id in accounts
                for method in USER_ACCOUNT_SUBSCRIPTIONS
            )
        )
        await self._reconcile(accounts, with_trades=True)
        log.info("user hub: %d account(s) subscribed and reconciled", len(accounts))

    async def _resolve_accounts(self) -> tuple[int, ...]:
        if not self._configured:
            found = await self._rest.search_accounts(only_active=True)
            self._accounts = tuple(account.id for account in found)
        return self._accounts

    async def _reconcile(self, account_ids: Sequence[int], *, with_trades: bool) -> None:
        requested = self._clock.monotonic()
        accounts = await self._rest.search_accounts(only_active=not self._configured)
        by_id = {account.id: account for account in accounts}
        missing = [a for a in account_ids if a not in by_id]
        for account_id in missing:
            self._noisy(
                logging.WARNING,
                ("missing-account", str(account_id)),
                "account %d is not in Account/search; not reconciled",
                account_id,
            )
        present = [by_id[a] for a in account_ids if a in by_id]
        await asyncio.gather(
            *(self._reconcile_one(account, requested, with_trades) for account in present)
        )

    async def _reconcile_one(self, account: Account, requested: float, with_trades: bool) -> None:
        reads: list[Any] = [
            self._rest.search_open_positions(account.id),
            self._rest.search_open_orders(account.id),
        ]
        if with_trades:
            reads.append(self._rest.search_trades(account.id, self._sink.fills_since()))
        results = await asyncio.gather(*reads)
        positions: list[Position] = results[0]
        orders: list[Order] = results[1]
        trades: list[Trade] | None = results[2] if with_trades else None
        await self._sink.reconcile(
            AccountSnapshot(
                account=account,
                positions=positions,
                orders=orders,
                trades=trades,
                requested=requested,
            )
        )

    def _on_user_event(self, event: HubEvent) -> None:
        received = self._clock.monotonic()
        if event.target not in USER_EVENT_MODELS:
            self._noisy(
                logging.INFO, ("unknown", event.target), "user hub: ignored event %r", event.target
            )
            return
        try:
            payload = parse_user_event(event.target, event.arguments)
        except PayloadError as exc:
            self.malformed_events += 1
            self._noisy(
                logging.WARNING,
                (event.target, exc.reason),
                "user hub: skipped malformed %s: %s",
                event.target,
                exc.reason,
            )
            return
        account_id = payload.id if isinstance(payload, Account) else payload.account_id
        if self._accounts and account_id not in self._accounts:
            if self._configured or not isinstance(payload, Account):
                return  # another account on the same login, not guarded
            # `accounts: []` guards every active account, one opened during the day too.
            self._adopt(account_id)
        out: GatewayEvent
        if isinstance(payload, Account):
            out = AccountEvent(payload, received)
        elif isinstance(payload, Order):
            out = OrderEvent(payload, received)
        elif isinstance(payload, Position):
            out = PositionEvent(payload, received)
        else:
            out = TradeEvent(payload, received)
        self._sink.submit(out)

    def _adopt(self, account_id: int) -> None:
        """Guard an account that appeared while riskman runs: subscribe and reconcile it."""
        self._accounts = (*self._accounts, account_id)
        log.warning("account %d appeared on the gateway: guarding it from now on", account_id)
        task = asyncio.get_running_loop().create_task(
            self._subscribe_new(account_id), name=f"riskman-adopt-{account_id}"
        )
        self._adopting.add(task)
        task.add_done_callback(self._adopting.discard)

    async def _subscribe_new(self, account_id: int) -> None:
        try:
            await asyncio.gather(
                *(self.user.invoke(method, [account_id]) for method in USER_ACCOUNT_SUBSCRIPTIONS)
            )
            await self._reconcile([account_id], with_trades=True)
            log.info("user hub: new account %d subscribed and reconciled", account_id)
        except Exception as exc:
            # The next rebuild of the hub subscribes it (it is in the list now); meanwhile
            # the stale poll reads its positions.
            log.warning("could not subscribe new account %d yet: %s", account_id, exc)

    # --- market hub -----------------------------------------------------------------------

    async def _setup_market(self, hub: HubTransport) -> None:
        # The engine's current set is the truth after a gap; want_quotes() updates it live.
        self._wanted = frozenset(self._sink.quote_contracts())
        self._note_wanted()
        await self._sync_quotes(hub, fresh_connection=True)

    async def _sync_quotes_live(self) -> None:
        try:
            await self._sync_quotes(None)
        except HubInvokeError as exc:
            log.warning("market hub: quote subscription refused: %s", exc)
        except HubError as exc:
            # The connection is gone; its supervisor rebuilds it and resubscribes everything.
            log.info("market hub: quote subscription not sent (%s)", exc)

    async def _sync_quotes(
        self, hub: HubTransport | None, *, fresh_connection: bool = False
    ) -> None:
        async with self._quote_lock:
            if fresh_connection:
                # A new connection has no subscriptions (the server forgets them).
                self._subscribed = set()
            while True:
                wanted = self._wanted
                add = sorted(wanted - self._subscribed - self._refused)
                remove = sorted(self._subscribed - wanted)
                if not add and not remove:
                    return
                calls = [(SUBSCRIBE_QUOTES, c) for c in add] + [
                    (UNSUBSCRIBE_QUOTES, c) for c in remove
                ]
                results = await asyncio.gather(
                    *(self._invoke_market(hub, method, [c]) for method, c in calls),
                    return_exceptions=True,
                )
                for (method, contract_id), result in zip(calls, results, strict=True):
                    if isinstance(result, HubInvokeError):
                        # A contract the hub refuses must not make us rebuild forever.
                        log.warning("market hub: %s(%s) refused: %s", method, contract_id, result)
                        if method == SUBSCRIBE_QUOTES:
                            self._refused.add(contract_id)
                        else:
                            self._subscribed.discard(contract_id)
                    elif isinstance(result, BaseException):
                        raise result
                    elif method == SUBSCRIBE_QUOTES:
                        self._subscribed.add(contract_id)
                    else:
                        self._subscribed.discard(contract_id)

    async def _invoke_market(self, hub: HubTransport | None, method: str, args: list[Any]) -> Any:
        if hub is not None:
            return await hub.invoke(method, args)
        return await self.market.invoke(method, args)

    def _on_market_event(self, event: HubEvent) -> None:
        received = self._clock.monotonic()
        if event.target != "GatewayQuote":
            if event.target not in MARKET_EVENTS:
                self._noisy(
                    logging.INFO,
                    ("unknown", event.target),
                    "market hub: ignored event %r",
                    event.target,
                )
            return
        try:
            contract_id, quote = parse_quote(event.arguments)
        except PayloadError as exc:
            self.malformed_events += 1
            self._noisy(
                logging.WARNING,
                (event.target, exc.reason),
                "market hub: skipped malformed %s: %s",
                event.target,
                exc.reason,
            )
            return
        if contract_id in self._wanted:
            self._quote_seen[contract_id] = received
        if contract_id in self._rest_priced:
            self._rest_priced.discard(contract_id)
            log.info("market hub: quotes for %s resumed; REST pricing stopped", contract_id)
        self._sink.submit(QuoteEvent(contract_id, quote, received))

    # --- REST prices for contracts whose quotes stopped ------------------------------------

    def _note_wanted(self) -> None:
        """A newly wanted contract gets `quote_stale_after` to receive its first quote."""
        now = self._clock.monotonic()
        for contract_id in self._wanted:
            self._quote_seen.setdefault(contract_id, now)
        for contract_id in set(self._quote_seen) - self._wanted:
            del self._quote_seen[contract_id]
            self._no_bars_until.pop(contract_id, None)
        self._rest_priced &= self._wanted

    async def _price_stale_quotes(self) -> None:
        interval = self._config.stale_poll_interval
        while True:
            await self._clock.sleep(interval)
            try:
                await self._price_once(interval)
            except Exception:  # the pricer must outlive any surprise
                log.exception("REST pricing failed")

    async def _price_once(self, interval: float) -> None:
        for contract_id in sorted(self._wanted):
            seen = self._quote_seen.get(contract_id)
            asked = self._clock.monotonic()
            if seen is None or asked - seen <= self._quote_stale_after():
                continue
            if asked < self._no_bars_until.get(contract_id, 0.0):
                continue
            try:
                price = await self._rest.last_price(contract_id)
            except GatewayError as exc:
                self._noisy(
                    logging.WARNING,
                    ("rest-price", type(exc).__name__),
                    "REST price of %s failed: %s",
                    contract_id,
                    exc,
                )
                continue
            if price is None:
                # No trade in the last half hour: the market is closed, and a stale quote then
                # closes nothing. Ask again in a minute, not every poll (a weekend is long).
                self._no_bars_until[contract_id] = asked + NO_BARS_RETRY
                continue
            if contract_id not in self._wanted:
                continue
            if self._quote_seen.get(contract_id, asked) > asked:
                continue  # a hub quote arrived meanwhile: it is fresher
            if contract_id not in self._rest_priced:
                self._rest_priced.add(contract_id)
                log.warning(
                    "market hub: no quote for %s in %.0f s; pricing it from History/retrieveBars "
                    "every %g s until quotes resume",
                    contract_id,
                    asked - (seen or asked),
                    interval,
                )
            self._submit_rest_price(contract_id, price)

    def _submit_rest_price(self, contract_id: str, price: Decimal) -> None:
        quote = Quote(last_price=price)
        self._sink.submit(QuoteEvent(contract_id, quote, self._clock.monotonic(), source="rest"))

    # --- health and stale polling ---------------------------------------------------------

    def _on_health(self, health: FeedHealth) -> None:
        if health.hub == "user":
            if health.state is FeedState.CONNECTED:
                self._untrusted.clear()
                self._trusted.set()
                if self._untrusted_announced and self._untrusted_since is not None:
                    log.info(
                        "user feed trusted again after %.0f s (subscribed and reconciled)",
                        self._clock.monotonic() - self._untrusted_since,
                    )
                self._untrusted_since = None
                self._untrusted_announced = False
            else:
                self._untrusted.set()
                self._trusted.clear()
                if self._untrusted_since is None:
                    self._untrusted_since = self._clock.monotonic()
        self._sink.feed_health(health)

    async def _poll_while_untrusted(self) -> None:
        # The first poll comes one interval after trust was lost: a routine drop is rebuilt
        # and reconciled well within it, so polling is only for real outages.
        interval = self._config.stale_poll_interval
        reminded = 0.0
        while True:
            await self._untrusted.wait()
            await self._clock.sleep(interval)
            if self.user.trusted:
                continue
            now = self._clock.monotonic()
            since = self._untrusted_since if self._untrusted_since is not None else now
            health = self.user.health()
            if not self._untrusted_announced:
                self._untrusted_announced = True
                reminded = now
                log.warning(
                    "user feed not trusted (%s: %s): positions and orders are re-read over "
                    "REST every %g s until it is back",
                    health.state.value,
                    health.detail,
                    interval,
                )
            elif now - reminded >= UNTRUSTED_REMINDER:
                reminded = now
                log.warning(
                    "user feed still not trusted after %.0f s (%s: %s); enforcing from REST "
                    "polls every %g s",
                    now - since,
                    health.state.value,
                    health.detail,
                    interval,
                )
            try:
                await self._poll_once()
            except GatewayError as exc:
                self._noisy(
                    logging.WARNING, ("poll", type(exc).__name__), "stale poll failed: %s", exc
                )
            except Exception:  # the poller must outlive any surprise
                log.exception("stale poll failed")

    async def _poll_once(self) -> None:
        accounts = self._accounts or await self._resolve_accounts()
        await self._reconcile(accounts, with_trades=False)
        self.polls += 1


__all__ = ["GatewayFeed"]

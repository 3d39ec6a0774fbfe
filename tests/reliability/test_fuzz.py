"""Bad input, generated: raw hub payloads of every event type through the feed's parsing path
into a running engine (wrong types, missing fields, huge numbers, NaN, unknown enums, unknown
events, duplicated and out-of-order), garbage REST replies through the real REST client,
and invalid configuration values through the loader and the admin screens' writer.

What must hold: the engine never dies and keeps enforcing; a bad item is logged once (a
WARNING at the boundary, never a traceback from inside the engine) and skipped; a valid
stream, however duplicated and reordered, counts every fill exactly once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from riskman.config import ConfigError, GatewayConfig, Settings, load_config
from riskman.config_writer import update_config
from riskman.core.clock import FakeClock, SystemClock
from riskman.core.enums import OrderSide, PositionType
from riskman.core.models import Position, Trade
from riskman.core.ports import AccountSnapshot, PositionEvent, TradeEvent
from riskman.engine.engine import Engine
from riskman.gateway.errors import GatewayError
from riskman.gateway.feed import GatewayFeed
from riskman.gateway.ratelimit import RateLimiter
from riskman.gateway.realtime import HubEvent
from riskman.gateway.rest import RestClient, RetryPolicy
from riskman.rules import ALL_RULES
from tests.conftest import HOLIDAYS, REPO
from tests.fakes import CONTRACTS, MNQ, T0, FakeGateway, account, contract

ACC = 7
FUZZ_RULES: dict[str, Any] = {
    "max_contracts": {"limit": 3},
    "max_contracts_per_instrument": {"default_limit": 2},
    "daily_realized_loss": {"limit": 500},
    "daily_unrealized_loss": {"limit": 300},
    "max_unrealized_profit": {"target": 1000},
    "trade_frequency_limit": {"per_minute": 5, "per_hour": 30, "per_session": 100},
    "cooldown_after_loss": {"tiers": [{"loss": 100, "cooldown": 300}]},
    "no_stop_loss_grace": {"grace_seconds": 30},
    "auth_loss_guard": {},
    "symbol_blocks": {"symbols": ["RTY"]},
    "trade_management": {"breakeven": {"trigger_ticks": 10, "offset_ticks": 1}},
    "daily_realized_profit": {"target": 2000},
    "max_loss_limit": {"starting_balance": 50000, "drawdown": 2000},
}


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at(self, level: int) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno >= level]


@contextmanager
def recording(name: str = "riskman") -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger(name)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


class _NoTokens:
    """The feed is driven by hand here: its hubs are never started."""

    token_version = 0

    async def access_token(self) -> str:
        raise AssertionError("not used")

    async def renew_token(self, stale_version: int | None = None) -> str:
        raise AssertionError("not used")

    def add_token_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        return lambda: None


class Rig:
    """A running engine (all rules on, FakeGateway that answers closes) and a feed in front."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock(T0)
        self.gateway = FakeGateway()
        settings_ = Settings.model_validate(
            {"holidays_file": HOLIDAYS, "database": tmp / "riskman.db", "rules": FUZZ_RULES}
        )
        self.engine: Engine = self.run(
            Engine.open(settings_, self.gateway, clock=self.clock, rule_classes=ALL_RULES)
        )
        for contract_id in CONTRACTS:
            self.engine.contracts.cache_contract(contract(contract_id))
        self.gateway.sink = self.engine.submit
        self.run(self.engine.start())
        self.feed = GatewayFeed(_NoTokens(), GatewayConfig(), self.engine, clock=self.clock)  # type: ignore[arg-type]
        self.sentinel = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def settle(self) -> None:
        self.run(self.engine.drain(10))

    def alive(self) -> None:
        """The router still routes: a fresh position shows up in the state."""
        consumer = self.engine._consumer
        assert consumer is not None and not consumer.done(), "the router task died"
        self.sentinel += 1
        contract_id = "CON.F.US.CLE.F27"
        account_id = 900_000 + self.sentinel
        self.engine.submit(
            PositionEvent(
                Position(
                    id=1,
                    account_id=account_id,
                    contract_id=contract_id,
                    type=PositionType.LONG,
                    size=1,
                    average_price=Decimal("70"),
                )
            )
        )
        self.settle()
        assert self.engine.state.get_contract_count(account_id, contract_id) == 1

    def close(self) -> None:
        self.run(self.engine.stop(grace=0.1))
        self.run(self.engine.close())
        self.loop.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    built = Rig(tmp_path)
    try:
        yield built
    finally:
        built.close()


# --- hub payloads ----------------------------------------------------------------------------

_nasty = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=16),
    st.sampled_from(["NaN", "Infinity", "1e999", "-0", "", "2026-13-45T99:00:00Z", "0x10"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
_ids = st.one_of(st.just(ACC), st.integers(0, 5), st.just(2**63 - 1))
_contracts = st.sampled_from([MNQ, "CON.F.US.EP.Z26", "CON.F.US.RTY.Z26", "X", "CON..", "a.b.c"])
_stamps = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 2),  # noqa: DTZ001 (hypothesis wants naive bounds)
        max_value=datetime(9999, 12, 30),  # noqa: DTZ001
        timezones=st.just(UTC),
    ).map(lambda d: d.isoformat()),
    st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-11-18T15:00:00"]),
    st.just(T0.isoformat()),
)
_prices = st.one_of(
    st.decimals(min_value=-(10**6), max_value=10**6, places=2).map(float),
    st.sampled_from([0, 0.25, 21000.25, 1e12, -1e12]),
)
_sizes = st.one_of(st.integers(0, 10), st.just(10**6))


def _enum(high: int) -> st.SearchStrategy[int]:
    return st.integers(0, high)


Fields = tuple[dict[str, Any], dict[str, Any]]

# (required fields, optional fields) of each user event, with values of the right type and
# range (edges included); `_payload` then breaks some of them.
_FIELDS: dict[str, Fields] = {
    "GatewayUserAccount": (
        {"id": _ids},
        {
            "name": st.text(max_size=8),
            "balance": _prices,
            "canTrade": st.booleans(),
            "isVisible": st.booleans(),
            "simulated": st.booleans(),
        },
    ),
    "GatewayUserPosition": (
        {"accountId": _ids, "contractId": _contracts, "size": _sizes, "type": _enum(2)},
        {"id": _ids, "creationTimestamp": _stamps, "averagePrice": _prices},
    ),
    "GatewayUserOrder": (
        {
            "id": _ids,
            "accountId": _ids,
            "contractId": _contracts,
            "status": _enum(8),
            "side": _enum(1),
        },
        {
            "creationTimestamp": _stamps,
            "updateTimestamp": _stamps,
            "type": _enum(7),
            "size": _sizes,
            "limitPrice": _prices,
            "stopPrice": _prices,
            "fillVolume": _sizes,
            "filledPrice": _prices,
            "parentOrderId": _ids,
            "trailDistance": _sizes,
        },
    ),
    "GatewayUserTrade": (
        {
            "id": _ids,
            "accountId": _ids,
            "contractId": _contracts,
            "creationTimestamp": _stamps,
            "price": _prices,
            "side": _enum(1),
            "size": _sizes,
        },
        {
            "profitAndLoss": st.one_of(st.none(), _prices),
            "fees": _prices,
            "voided": st.booleans(),
            "orderId": _ids,
        },
    ),
}
_QUOTE_FIELDS: Fields = (
    {},
    {
        "lastPrice": _prices,
        "bestBid": _prices,
        "bestAsk": _prices,
        "volume": _sizes,
        "timestamp": _stamps,
        "symbol": st.text(max_size=8),
    },
)
# What a broken field becomes: wrong types, huge numbers, NaN and infinities, unknown enum
# values, junk strings; or the field is dropped.
_breakage = st.one_of(
    _nasty,
    st.integers(11, 2**70),
    st.integers(-(2**70), -1),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e300, 99, -1]),
)
_DROP = "<drop this field>"


def _mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` five times in six. (`one_of` would flatten the many branches of `bad` into its
    own and draw mostly from them.)"""
    return st.integers(0, 5).flatmap(lambda n: good if n else bad)


def _payload(fields: Fields) -> st.SearchStrategy[dict[str, Any]]:
    """A valid-looking object; half of them with one or two fields broken, dropped or added."""
    required, optional = fields
    valid = st.fixed_dictionaries(required, optional=optional)

    def break_some(data: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
        keys = sorted({*data, *required, "unexpectedField"})
        changes = st.dictionaries(
            st.sampled_from(keys), st.one_of(_breakage, st.just(_DROP)), min_size=1, max_size=2
        )
        return changes.map(lambda c: {k: v for k, v in {**data, **c}.items() if v != _DROP})

    # Mostly valid: enough get through to exercise the engine itself.
    return _mostly(valid, valid.flatmap(break_some))


def _user_event(name: str) -> st.SearchStrategy[HubEvent]:
    data = _payload(_FIELDS[name])
    argument = st.one_of(
        data.map(lambda d: {"action": 1, "data": d}),  # TopstepX's wrapper
        data,  # the documented bare form
    )
    good = st.lists(argument, min_size=1, max_size=2)
    bad = st.one_of(st.just([]), st.lists(_nasty, max_size=2), _nasty)
    return _mostly(good, bad).map(lambda args: HubEvent(name, args))


_market_event = st.tuples(
    st.sampled_from(["GatewayQuote", "GatewayQuote", "GatewayTrade", "GatewayDepth", "Mystery"]),
    _mostly(
        st.tuples(_contracts, _payload(_QUOTE_FIELDS)).map(list),
        st.one_of(st.tuples(_nasty, _nasty).map(list), _nasty),
    ),
).map(lambda t: HubEvent(t[0], t[1]))

_user_events = st.one_of(
    *(_user_event(name) for name in _FIELDS),
    st.builds(HubEvent, st.sampled_from(["GatewayUserMystery", ""]), st.lists(_nasty, max_size=2)),
)


def test_any_stream_of_raw_hub_events_never_kills_the_engine(rig: Rig) -> None:
    """Hundreds of streams of raw user and market events, duplicated and shuffled, each fed
    through the feed's parsing path into the running engine."""

    @settings(
        max_examples=250,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        events=st.lists(st.one_of(_user_events, _market_event), max_size=12),
        replay=st.randoms(use_true_random=False),
    )
    def stream(events: list[HubEvent], replay: Any) -> None:
        # Duplicates and disorder, as a reconnect or a misbehaving gateway could produce.
        events = events + [replay.choice(events) for _ in range(len(events) // 2)]
        replay.shuffle(events)
        with recording() as logs:
            for event in events:
                if event.target.startswith("GatewayUser") or event.target == "":
                    rig.feed._on_user_event(event)
                else:
                    rig.feed._on_market_event(event)
            rig.settle()
        # Bad items are stopped at the boundary with a WARNING; nothing reaches the engine
        # that makes it fail with a traceback.
        errors = [r for r in logs.at(logging.ERROR)]
        assert errors == [], [r.getMessage() for r in errors]
        rig.alive()
        seen["events"] += len(events)

    seen = {"events": 0}
    stream()
    # Not a parser test only: most events got through to the engine.
    assert rig.feed.malformed_events < 0.5 * seen["events"], (rig.feed.malformed_events, seen)


def test_a_malformed_event_is_logged_once_and_skipped(rig: Rig) -> None:
    bad = HubEvent("GatewayUserPosition", [{"action": 1, "data": {"accountId": "seven"}}])
    with recording() as logs:
        rig.feed._on_user_event(bad)
        rig.settle()
    lines = [r for r in logs.at(logging.INFO) if "GatewayUserPosition" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelno == logging.WARNING and lines[0].exc_info is None
    assert "accountId" in lines[0].getMessage() and "skipped" in lines[0].getMessage()
    # The same bad item again and again is not a flood: one more line per hundred.
    with recording() as logs:
        for _ in range(98):
            rig.feed._on_user_event(bad)
    assert [r for r in logs.at(logging.INFO) if "GatewayUserPosition" in r.getMessage()] == []
    assert rig.feed.malformed_events == 99
    # A different bad item gets its own line.
    other = HubEvent("GatewayUserTrade", [{"id": 1, "accountId": ACC, "price": float("nan")}])
    with recording() as logs:
        rig.feed._on_user_event(other)
    assert len([r for r in logs.at(logging.WARNING) if "GatewayUserTrade" in r.getMessage()]) == 1
    rig.alive()


def test_an_event_that_fails_inside_the_engine_is_logged_once_and_skipped(rig: Rig) -> None:
    """Should a valid payload still break a rule or the router, the router logs it once (with
    its traceback) and routes the next event."""
    rule = rig.engine.rules[0]

    def broken(account_id: int, trigger: Any) -> list[Any]:
        raise ZeroDivisionError("a rule bug")

    rule.evaluate = broken  # type: ignore[method-assign]
    with recording() as logs:
        rig.engine.submit(PositionEvent(_position(2)))
        rig.settle()
    failures = [r for r in logs.at(logging.ERROR) if r.exc_info is not None]
    assert len(failures) == 1 and rule.id in failures[0].getMessage()
    # The same bug on every event (every quote, say) is not a flood of tracebacks.
    with recording() as logs:
        for size in range(3, 60):
            rig.engine.submit(PositionEvent(_position(size)))
        rig.settle()
    # Each kind of failure is logged once: only a new one (the re-check an enforcement
    # action asks for when it finishes meanwhile is another trigger) may show here.
    again = [r.getMessage() for r in logs.at(logging.ERROR)]
    assert not [m for m in again if "PositionTrigger" in m or "(1 times" not in m], again
    rig.alive()


# --- duplicated and out-of-order valid events --------------------------------------------


def _position(size: int, contract_id: str = MNQ) -> Position:
    return Position(
        id=5,
        account_id=ACC,
        contract_id=contract_id,
        type=PositionType.LONG if size else PositionType.UNDEFINED,
        size=size,
        average_price=Decimal("21000"),
    )


def _fills(losses: list[int]) -> list[Trade]:
    fills = []
    for k, loss in enumerate(losses):
        at = T0 - timedelta(minutes=30) + timedelta(seconds=10 * k)
        for leg, pnl in ((1, None), (2, Decimal(loss))):
            fills.append(
                Trade(
                    id=1000 + 10 * k + leg,
                    account_id=ACC,
                    contract_id=MNQ,
                    creation_timestamp=at + timedelta(seconds=leg),
                    price=Decimal("21000"),
                    profit_and_loss=pnl,
                    fees=Decimal("0.37"),
                    side=OrderSide.BID if pnl is None else OrderSide.ASK,
                    size=1,
                    order_id=500 + 2 * k + leg,
                )
            )
    return fills


def test_duplicated_and_reordered_fills_count_exactly_once(rig: Rig) -> None:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        losses=st.lists(st.integers(-90, 60), min_size=1, max_size=8),
        replay=st.randoms(use_true_random=False),
    )
    def stream(losses: list[int], replay: Any) -> None:
        rig.sentinel += 1
        base = 10_000 * rig.sentinel  # fresh ids for every example: the engine is shared
        fills = [
            t.model_copy(update={"id": t.id + base, "order_id": t.order_id + base})
            for t in _fills(losses)
        ]
        delivered = fills + [replay.choice(fills) for _ in range(len(fills))]
        replay.shuffle(delivered)
        before = rig.engine.pnl.day_totals(ACC)
        counted_before = rig.engine.counter.get_trade_counts(ACC).session
        for fill in delivered:
            rig.engine.submit(TradeEvent(fill))
        # A reconnect replays them all once more, through the reconcile path.
        rig.run(
            rig.engine.reconcile(
                AccountSnapshot(
                    account=rig.engine.state.get_account(ACC) or account(ACC),
                    positions=[],
                    orders=[],
                    trades=list(reversed(fills)),
                )
            )
        )
        rig.settle()
        after = rig.engine.pnl.day_totals(ACC)
        expected = sum((f.net_pnl for f in fills), Decimal(0))
        assert after.fills - before.fills == len(fills)
        assert after.realized - before.realized == expected
        assert rig.engine.counter.get_trade_counts(ACC).session - counted_before == len(fills)

    stream()
    rig.alive()


async def test_a_rest_snapshot_older_than_a_live_event_does_not_undo_it(
    tmp_path: Path,
) -> None:
    """A reconnect's REST reads take time; a position that opened while they ran arrives as
    an event before the (older) snapshot is routed. The snapshot must not flatten it."""
    clock = FakeClock(T0)
    gateway = FakeGateway()
    settings_ = Settings(holidays_file=HOLIDAYS, database=tmp_path / "riskman.db")
    engine = await Engine.open(settings_, gateway, clock=clock, rule_classes=ALL_RULES)
    try:
        await engine.start()
        requested = clock.monotonic()
        await clock.advance(0.05)
        engine.submit(PositionEvent(_position(2), received=clock.monotonic()))
        await engine.reconcile(
            AccountSnapshot(account(ACC), positions=[], orders=[], trades=[], requested=requested)
        )
        await engine.drain()
        assert engine.state.get_contract_count(ACC, MNQ) == 2
        # A snapshot read after the event is the truth again.
        await clock.advance(0.05)
        await engine.reconcile(
            AccountSnapshot(
                account(ACC), positions=[], orders=[], trades=[], requested=clock.monotonic()
            )
        )
        await engine.drain()
        assert engine.state.get_contract_count(ACC, MNQ) == 0
    finally:
        await engine.close()


# --- REST replies ----------------------------------------------------------------------------

_json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=10),
    ),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,7}", fullmatch=True), inner, max_size=4
        )
    ),
    max_leaves=12,
)
_rows = {
    "accounts": _payload(_FIELDS["GatewayUserAccount"]),
    "positions": _payload(_FIELDS["GatewayUserPosition"]),
    "orders": _payload(_FIELDS["GatewayUserOrder"]),
    "trades": _payload(_FIELDS["GatewayUserTrade"]),
    "contract": st.fixed_dictionaries(
        {}, optional={"id": _contracts, "tickSize": _prices, "tickValue": _prices, "name": _nasty}
    ),
    "bars": st.fixed_dictionaries({}, optional={"t": _stamps, "c": _prices}),
}


def _reply(key: str) -> st.SearchStrategy[tuple[int, bytes]]:
    row = _rows[key]
    payload = st.lists(row, max_size=3) if key != "contract" else row
    envelope = st.fixed_dictionaries(
        {},
        optional={
            "success": st.one_of(st.booleans(), _nasty),
            "errorCode": st.one_of(st.integers(-1, 12), _nasty),
            "errorMessage": st.one_of(st.text(max_size=20), _nasty),
            key: st.one_of(payload, _json_values),
        },
    ).map(lambda d: json.dumps(d, allow_nan=True).encode())
    body = st.one_of(envelope, st.binary(max_size=40), st.just(b"NaN"), st.just(b"{"))
    status = st.sampled_from([200, 200, 200, 201, 204, 302, 400, 401, 403, 404, 429, 500, 503])
    return st.tuples(status, body)


_CALLS: dict[str, tuple[str, Callable[[RestClient], Any]]] = {
    "Account/search": ("accounts", lambda c: c.search_accounts()),
    "Position/searchOpen": ("positions", lambda c: c.search_open_positions(ACC)),
    "Order/searchOpen": ("orders", lambda c: c.search_open_orders(ACC)),
    "Trade/search": ("trades", lambda c: c.search_trades(ACC, T0)),
    "Contract/searchById": ("contract", lambda c: c.get_contract(MNQ)),
    "History/retrieveBars": ("bars", lambda c: c.last_price(MNQ)),
    "Position/closeContract": ("positions", lambda c: c.close_contract(ACC, MNQ)),
    "Order/cancel": ("orders", lambda c: c.cancel_order(ACC, 1)),
}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), endpoint=st.sampled_from(sorted(_CALLS)))
def test_any_rest_reply_is_a_model_or_a_gateway_error(data: st.DataObject, endpoint: str) -> None:
    key, call = _CALLS[endpoint]
    status, body = data.draw(_reply(key))

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("Auth/loginKey"):
            return httpx.Response(200, json={"success": True, "errorCode": 0, "token": "t" * 40})
        return httpx.Response(status, content=body)

    async def run() -> None:
        clock = SystemClock()
        client = RestClient(
            GatewayConfig(username="fuzz"),
            "fuzz-api-key",
            clock=clock,
            transport=httpx.MockTransport(answer),
            retry=RetryPolicy(read_attempts=1, mutation_attempts=1),
            limiter=RateLimiter(clock, limit=10**9, window=1.0),
            bars_limiter=RateLimiter(clock, limit=10**9, window=1.0),
        )
        try:
            result = await call(client)
        except GatewayError:
            return
        finally:
            await client.aclose()
        if isinstance(result, list):
            assert all(isinstance(item, BaseModel) for item in result)
        else:
            assert result is None or isinstance(result, BaseModel | Decimal)

    asyncio.run(run())


# --- configuration -------------------------------------------------------------------------


def _leaf_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        sub = annotation if isinstance(annotation, type) else None
        if sub is None and get_origin(annotation) in (Union, UnionType):
            # `Rules | None` (a nested object that may be absent); lists and mappings of
            # objects are leaves: their items have no name to put in a key path.
            sub = next(
                (
                    a
                    for a in get_args(annotation)
                    if isinstance(a, type) and issubclass(a, BaseModel)
                ),
                None,
            )
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            paths += _leaf_paths(sub, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


_CONFIG_KEYS = [
    path
    for path in _leaf_paths(Settings)
    if path not in {("gateway", "api_key"), ("gateway", "api_key_file")}
]
_LINE = re.compile(r"^(?P<file>.+?): (?P<key>[^:]+|\(file\)|line \d+): (?P<reason>\S.*)$")


def _nest(key: tuple[str, ...], value: object) -> dict[str, object]:
    data: dict[str, object] = {}
    node = data
    for part in key[:-1]:
        node = node.setdefault(part, {})  # type: ignore[assignment]
    node[key[-1]] = value
    return data


def test_the_fuzzed_keys_cover_the_whole_configuration() -> None:
    keys = {".".join(k) for k in _CONFIG_KEYS}
    assert {"rules.max_contracts.limit", "gateway.hub_silence_timeout", "daily_reset"} <= keys
    assert len(keys) > 60


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=st.sampled_from(_CONFIG_KEYS), value=_json_values)
def test_every_invalid_config_value_is_reported_as_file_key_path_reason(
    tmp_path: Path, key: tuple[str, ...], value: object
) -> None:
    from ruamel.yaml import YAML

    path = tmp_path / "fuzz.yaml"
    (tmp_path / "holidays.yaml").write_text((REPO / "config" / "holidays.yaml").read_text())
    if key[0] == "database":
        value = value if isinstance(value, str) else 5
    with path.open("w") as handle:
        YAML(typ="safe", pure=True).dump(_nest(key, value), handle)
    try:
        load_config(path)
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            match = _LINE.match(problem)
            assert match and match["file"] == str(path), problem
            assert "\n" not in problem
            where = match["key"]
            # Reported at the key (or inside it, or at the enclosing object for a check that
            # spans keys), never somewhere unrelated.
            dotted = ".".join(key)
            parent = ".".join(key[:-1])
            assert (
                where.startswith(dotted)
                or dotted.startswith(where)
                or (parent and where.startswith(parent))
                or where in {"(file)", "(top level)", "holidays_file"}
                or where.startswith("line ")
            ), (problem, dotted)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=st.sampled_from([k for k in _CONFIG_KEYS if k[0] in {"rules", "daily_reset", "timezone"}]),
    value=_json_values,
)
def test_admin_edits_are_validated_before_anything_is_written(
    tmp_path: Path, key: tuple[str, ...], value: object
) -> None:
    """The admin screens save through `update_config`: an invalid value is refused with
    `file: key.path: reason` and the file is left exactly as it was."""
    path = tmp_path / "riskman.yaml"
    (tmp_path / "holidays.yaml").write_text((REPO / "config" / "holidays.yaml").read_text())
    shipped = (REPO / "config" / "riskman.yaml").read_text()
    path.write_text(shipped)
    try:
        update_config(path, {key: value})
    except ConfigError as exc:
        assert path.read_text() == shipped
        assert all(_LINE.match(p) and p.startswith(f"{path}: ") for p in exc.problems)
    else:
        load_config(path)  # what was written loads

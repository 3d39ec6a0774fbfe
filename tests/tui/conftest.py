"""The terminal on a real engine: FakeGateway, FakeClock, a real SQLite file and a real YAML
config file (with comments, so saving from the admin screens can be checked on disk)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.pilot import Pilot

from riskman.admin import PasswordStore
from riskman.config import Settings, load_config
from riskman.control.inprocess import InProcessControl
from riskman.control.interface import LoginRequest
from riskman.core.clock import FakeClock
from riskman.core.ports import AccountEvent, OrderEvent, PositionEvent, QuoteEvent, TradeEvent
from riskman.core.views import FeedHealth, FeedState
from riskman.engine.engine import Engine
from riskman.rules import ALL_RULES
from riskman.tui.app import RiskmanApp
from tests.conftest import HOLIDAYS
from tests.fakes import (
    CONTRACTS,
    ES,
    MNQ,
    T0,
    FakeGateway,
    account,
    contract,
    order,
    position,
    quote,
    trade,
)

PASSWORD = "correct-horse"
ACC_A = 1001
ACC_B = 1002
SIZE = (160, 48)

CONFIG = """\
# riskman test configuration: these comments must survive an admin save.
gateway:
  api_url: http://127.0.0.1:9
  username: tester

accounts: []
timezone: America/Chicago
daily_reset: "17:00"
holidays_file: holidays.yaml
database: riskman.db

rules:
  # RULE-001: at most this many contracts open.
  max_contracts:
    enabled: true
    limit: 5
    count: net
    action: reduce_to_limit

  # RULE-003: the daily loss limit (dollars).
  daily_realized_loss:
    enabled: true
    limit: 300   # keep this comment
    include_unrealized: true

  trade_frequency_limit:
    enabled: true
    per_minute: 3
    per_hour: 10
    per_session: 50
    cooldowns: {per_minute: 60, per_hour: 1800, per_session: until_reset}

admin:
  idle_lock: 5m   # lock the admin screens after 5 minutes without a key
"""

Seed = Callable[[Engine, FakeGateway, FakeClock], Awaitable[None]]


def write_config(folder: Path, text: str = CONFIG) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HOLIDAYS, folder / "holidays.yaml")
    path = folder / "riskman.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def footer_keys(app: App[Any]) -> dict[str, tuple[str, str]]:
    """What the footer shows on screen: key -> (label, tooltip)."""
    keys: dict[str, tuple[str, str]] = {}
    for item in app.screen.query("FooterKey"):
        tooltip = item.tooltip
        keys[getattr(item, "key", "")] = (getattr(item, "description", ""), str(tooltip or ""))
    return keys


def healthy(engine: Engine, clock: FakeClock) -> None:
    for hub in ("user", "market"):
        engine.feed_health(FeedHealth(hub, FeedState.CONNECTED, 0.2, 0, "test", clock.now()))


async def trading_day(engine: Engine, gateway: FakeGateway, clock: FakeClock) -> None:
    """Two accounts mid-session: A holds MNQ with a stop and cools down after over-trading;
    B lost more than its daily limit and is locked until the reset."""
    healthy(engine, clock)
    for acc, balance in ((ACC_A, "49787.50"), (ACC_B, "49680")):
        gateway.accounts[acc] = account(acc, balance)
        await engine.process(AccountEvent(account(acc, balance)))
    # An intraday P&L history for A's sparkline: the quote walks while time passes.
    pos = position(ACC_A, MNQ, 2, "21000", opened=T0)
    gateway.set_position(pos)
    await engine.process(PositionEvent(pos))
    await engine.process(OrderEvent(order(ACC_A, 501, MNQ, stop="20950", size=2)))
    for step, last in enumerate(("21004", "21010", "20996", "20990", "20984", "20992", "20990")):
        await clock.advance(6)
        await engine.process(QuoteEvent(MNQ, quote(last), clock.monotonic()))
        if step == 3:
            await engine.process(
                TradeEvent(trade(ACC_A, pnl="-200", fees="12.50", at=clock.now(), trade_id=9001))
            )
    await engine.lockouts.set_cooldown(
        ACC_A, "4 trades within a minute (limit 3): cooldown for 1m", 45, rule="RULE-006"
    )
    # B: a big losing trade breaks RULE-003, and a position opened after it is closed.
    await engine.process(
        TradeEvent(
            trade(ACC_B, pnl="-310", fees="10", at=clock.now(), contract_id=ES, trade_id=9002)
        )
    )
    await engine.drain()
    es = position(ACC_B, ES, 1, "6650", opened=clock.now())
    gateway.set_position(es)
    await engine.process(PositionEvent(es))
    await gateway.wait_call("close_contract")
    await engine.drain()
    await engine.actions.wait_idle()
    await engine.drain()


class FactorySource:
    """Builds the engine inside the app's own event loop (snapshot tests run the app in a loop
    of their own), then seeds it."""

    def __init__(
        self, settings: Settings, clock: FakeClock, seed: Seed | None = trading_day
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.seed = seed
        self.gateway = FakeGateway()
        self.engine: Engine | None = None
        self.stopped = False

    @property
    def where(self) -> str:
        return "the test gateway"

    async def start(self) -> Engine:
        engine = await Engine.open(
            self.settings, self.gateway, clock=self.clock, rule_classes=ALL_RULES
        )
        self.engine = engine
        for contract_id in CONTRACTS:
            engine.contracts.cache_contract(contract(contract_id))
        self.gateway.sink = engine.submit
        await engine.start()
        await engine.drain()
        if self.seed is not None:
            await self.seed(engine, self.gateway, self.clock)
        return engine

    async def stop(self) -> None:
        self.stopped = True
        if self.engine is not None:
            engine, self.engine = self.engine, None
            await engine.close()


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = write_config(tmp_path)
    PasswordStore(load_config(path).password_file).set(PASSWORD)
    return path


@pytest.fixture
def settings(config_path: Path) -> Settings:
    return load_config(config_path)


def make_app(
    settings: Settings, config_path: Path, seed: Seed | None = trading_day, **kwargs: Any
) -> RiskmanApp:
    clock = FakeClock(T0)
    control = InProcessControl(FactorySource(settings, clock, seed), config_path, clock=clock)
    app = RiskmanApp(settings, config_path, control, clock=clock, cursor_blink=False, **kwargs)
    app.animation_level = "none"  # tab underlines would slide: slower tests, unsteady snapshots
    return app


@pytest.fixture
def app(settings: Settings, config_path: Path) -> RiskmanApp:
    return make_app(settings, config_path)


async def until(pilot: Pilot[Any], predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Let the app run until `predicate()` holds (bounded: fails after `timeout` seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s")
        await pilot.pause(0.02)


async def running(pilot: Pilot[Any]) -> RiskmanApp:
    """Wait until the engine runs and the first snapshot is on screen."""
    app = pilot.app
    assert isinstance(app, RiskmanApp)
    await until(pilot, lambda: app.snapshot is not None)
    await pilot.pause()
    return app


def engine_of(app: RiskmanApp) -> Engine:
    """The engine inside an embedded terminal (tests look at it directly)."""
    control = app.control
    assert isinstance(control, InProcessControl) and control.engine is not None
    return control.engine


def source_of(app: RiskmanApp) -> FactorySource:
    control = app.control
    assert isinstance(control, InProcessControl)
    source = control.source
    assert isinstance(source, FactorySource)
    return source


async def open_admin(pilot: Pilot[Any], password: str = PASSWORD) -> None:
    """Log in through the interface (no dialog) and open the admin screens."""
    app = pilot.app
    assert isinstance(app, RiskmanApp)
    answer = await app.control.login(LoginRequest(password=password))
    assert answer.session is not None
    await app.unlock_admin(answer.session)

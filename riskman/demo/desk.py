"""The demo's broker side: the demo folder's config (a rule set a new user breaks within a
minute) and the desk, the trader at his simulated broker (the keys of the demo panel and the
scripted trader place orders there through riskman's real REST client)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from riskman.config import shipped_file
from riskman.config_writer import update_config
from riskman.core.enums import OrderSide, OrderType
from riskman.gateway.errors import GatewayError
from riskman.runtime import Runtime
from riskman.sim.simulator import Simulator

DEMO_PASSWORD = "riskman-demo"
QUOTE_INTERVAL = 0.5
"""Seconds between simulated quote ticks: P&L moves while the user watches."""
SCRIPT_PAUSE = 1.5
"""Seconds between the scripted trader's orders (fast enough to over-trade within seconds)."""
HOLIDAYS = shipped_file("holidays.yaml")
NO_HOLIDAYS = "# The demo has no session rule: no holiday matters.\nclosed: []\nearly_close: []\n"


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    contract_id: str


INSTRUMENTS = (
    Instrument("MNQ", "CON.F.US.MNQ.Z26"),
    Instrument("ES", "CON.F.US.EP.Z26"),
    Instrument("CL", "CON.F.US.CLE.F27"),
)

DEMO_CONFIG = """\
# riskman demo configuration, written by `riskman demo`. The simulator listens on a new port
# each run; everything else here is yours to change (in this file or in the admin screens).
gateway:
  api_url: {api_url}
  user_hub_url: {user_hub_url}
  market_hub_url: {market_hub_url}
  username: demo        # the simulator's demo login (API key "demo")

# Both simulated accounts, listed so the admin screens can give one its own rules
# (`accounts: []` would guard every active account).
accounts: [1001, 1002]
timezone: America/Chicago
daily_reset: "17:00"
holidays_file: holidays.yaml
database: riskman.db

rules:
  # Break it: buy 4 contracts. riskman trims the position back to 3 at once.
  max_contracts:
    enabled: true
    limit: 3
    count: net
    action: reduce_to_limit

  # ES is a big contract: at most 2 of it.
  max_contracts_per_instrument:
    enabled: true
    default_limit: 3
    limits: {{ES: 2}}
    unknown_symbol: allow
    action: reduce_to_limit

  # Break it: a 4th fill within a minute starts a 60 s cooldown (no new positions).
  trade_frequency_limit:
    enabled: true
    per_minute: 3
    per_hour: 20
    per_session: 60
    cooldowns: {{per_minute: 60, per_hour: 10m, per_session: until_reset}}

  # Lose $300 today (open P&L included) and riskman flattens and locks until the reset.
  daily_realized_loss:
    enabled: true
    limit: 300
    include_unrealized: true

  # One position down $150: riskman closes it.
  daily_unrealized_loss:
    enabled: true
    limit: 150

  # A losing trade starts a cooldown: 2 minutes from $50, 5 minutes from $150.
  cooldown_after_loss:
    enabled: true
    tiers:
      - {{loss: 50, cooldown: 120}}
      - {{loss: 150, cooldown: 300}}

  daily_realized_profit:
    enabled: true
    target: 1000

  auth_loss_guard:
    enabled: true

  # No session rule: the demo must work on a weekend too.

quotes:
  stale_after: 10

admin:
  idle_lock: 5m         # the admin screens lock again after 5 minutes without a key
"""


def write_config(folder: Path, sim: Simulator) -> Path:
    """The demo's config (new, or an existing `--keep` one pointed at this run's port)."""
    folder.mkdir(parents=True, exist_ok=True)
    holidays = folder / "holidays.yaml"
    if not holidays.exists():
        if HOLIDAYS.exists():
            shutil.copyfile(HOLIDAYS, holidays)
        else:  # installed from a wheel, without the repository's config/ folder
            holidays.write_text(NO_HOLIDAYS, encoding="utf-8")
    path = folder / "riskman.yaml"
    urls = {
        "api_url": sim.base_url,
        "user_hub_url": sim.user_hub_url,
        "market_hub_url": sim.market_hub_url,
    }
    if path.exists():
        update_config(path, {("gateway", key): value for key, value in urls.items()})
    else:
        path.write_text(DEMO_CONFIG.format(**urls), encoding="utf-8")
    return path


class DemoDesk:
    """The trader at his broker: market orders for 1 contract, flatten, and a scripted trader
    that over-trades until riskman stops him. Orders go through the REST client to the
    simulator, which streams the fills back to riskman like a real gateway."""

    def __init__(
        self, sim: Simulator, runtime: Runtime, folder: Path, *, keep: bool, password: str | None
    ) -> None:
        self.sim = sim
        self.runtime = runtime
        self.folder = folder
        self.keep = keep
        self.password = password
        """The admin password when the demo set it (None: a kept folder's own password)."""
        self.account_id = sim.account_ids[0]
        self.account_name = sim.account(self.account_id).name
        self.instrument = INSTRUMENTS[0]
        self.last = "Ready: press b to buy 1 contract."
        self.on_news: Callable[[], None] = lambda: None
        self._script: asyncio.Task[None] | None = None
        self._scripting = False

    def say(self, text: str) -> None:
        self.last = text
        self.on_news()

    def next_instrument(self) -> None:
        index = INSTRUMENTS.index(self.instrument)
        self.instrument = INSTRUMENTS[(index + 1) % len(INSTRUMENTS)]
        self.say(f"Instrument: {self.instrument.symbol}.")

    async def order(self, side: OrderSide, instrument: Instrument | None = None) -> None:
        instrument = instrument or self.instrument
        rest = self.runtime.rest
        what = f"{side.label} 1 {instrument.symbol}"
        if rest is None:
            self.say(f"{what}: not connected yet.")
            return
        try:
            order_id = await rest.place_order(
                self.account_id, instrument.contract_id, OrderType.MARKET, side, 1
            )
        except GatewayError as exc:
            self.say(f"{what}: refused by the broker ({exc}).")
            return
        self.say(f"{what}: sent to the broker as order {order_id}.")

    async def flatten(self) -> None:
        rest = self.runtime.rest
        if rest is None:
            return
        try:
            for order in await rest.search_open_orders(self.account_id):
                await rest.cancel_order(self.account_id, order.id)
            positions = await rest.search_open_positions(self.account_id)
            for position in positions:
                await rest.close_contract(self.account_id, position.contract_id)
        except GatewayError as exc:
            self.say(f"Flatten failed: {exc}.")
            return
        self.say(f"Flattened {len(positions)} position(s) at the broker.")

    @property
    def scripted(self) -> bool:
        return self._scripting

    def toggle_script(self) -> None:
        if self.scripted:
            assert self._script is not None
            self._script.cancel()
            self.say("Scripted trader: off.")
        else:
            self._scripting = True
            self._script = asyncio.get_running_loop().create_task(
                self._tilted_trader(), name="demo-scripted-trader"
            )

    def _status(self) -> str:
        engine = self.runtime.engine
        view = None if engine is None else engine.snapshot().account(self.account_id)
        return "OK" if view is None else view.status

    async def _tilted_trader(self) -> None:
        """Buys and sells 1 MNQ every 1.5 s. When riskman stops him he tries once more (the
        lockout gate closes that position at once), then gives up."""
        mnq = INSTRUMENTS[0]
        pattern = (OrderSide.BID, OrderSide.BID, OrderSide.ASK, OrderSide.BID, OrderSide.BID)
        step = 0
        defied = False
        try:
            self.say("Scripted trader: on. He trades 1 MNQ every 1.5 s, whatever happens.")
            while True:
                status = self._status()
                if status != "OK":
                    if defied:
                        self.say(f"Scripted trader gives up: riskman holds the account ({status}).")
                        return
                    defied = True
                    self.say(f"Scripted trader: riskman says {status}… he buys anyway.")
                    await self.order(OrderSide.BID, mnq)
                else:
                    await self.order(pattern[step % len(pattern)], mnq)
                    step += 1
                await asyncio.sleep(SCRIPT_PAUSE)
        finally:
            self._scripting = False
            self.on_news()

    async def stop(self) -> None:
        if self._script is not None:
            self._script.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._script
            self._script = None

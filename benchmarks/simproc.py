"""The simulator in its own process, driven by the orchestrator (``python -m benchmarks.simproc``).

Every measured interval starts and ends here, on this process's ``time.monotonic()``:

- start: the simulator's hub queues the event for its socket writer (``Simulator.event_log``;
  the writer sends it on the next turn of this loop, so the simulator's own send path is
  inside every number, the floor's included);
- end: the simulator's REST view receives the close call (``RecordedRequest.received``, taken
  before the body is read).

The events are the simulator's benchmark pushes (``push_position`` / ``push_quote``): they go
out like any gateway event but do not run the matching engine, so a position the benchmark
pushes is not held by the simulated exchange and the close call is answered "position not
found" (riskman logs it as "already flat"). That answer comes after the measured interval.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import random
import signal
import time
from decimal import Decimal
from typing import Any

from riskman.core.enums import OrderSide
from riskman.sim import Simulator
from riskman.sim.contracts import DEFAULT_CONTRACTS, ContractSpec
from riskman.sim.exchange import UserEvent
from riskman.sim.rest import RecordedRequest

from .harness import ControlServer

PARTIAL_CLOSE = "Position/partialCloseContract"
GATEWAY_ORDER = (
    "GatewayUserOrder",
    "GatewayUserTrade",
    "GatewayUserPosition",
    "GatewayUserAccount",
)
"""The order in which the gateway sends the events of one fill, back to back (issue 16)."""
CLOSE = "Position/closeContract"
_TICK = 0.0005
"""Seconds between turns of the quote generator (it sends what is due at each turn)."""


def bench_contracts(count: int) -> list[ContractSpec]:
    """The simulator's 12 contracts, then next-year expiries of the same products (so 20
    contracts are 20 different instruments with real tick sizes and values)."""
    specs = list(DEFAULT_CONTRACTS)
    for spec in DEFAULT_CONTRACTS:
        if len(specs) >= count:
            break
        expiry = "H27" if not spec.id.endswith("27") else "M27"
        specs.append(
            dataclasses.replace(
                spec,
                id=spec.id.rsplit(".", 1)[0] + "." + expiry,
                name=spec.name[:-2] + expiry[0] + expiry[-1],
            )
        )
    return specs[:count]


class SimDriver:
    def __init__(self) -> None:
        self.sim: Simulator | None = None
        self.stopped = asyncio.Event()
        self._specs: dict[str, ContractSpec] = {}

    def _sim(self) -> Simulator:
        if self.sim is None:
            raise RuntimeError("start the simulator first")
        return self.sim

    # --- set-up -------------------------------------------------------------------------

    async def cmd_start(
        self, accounts: int = 1, contracts: int = 20, seed: int = 7, ping_interval: float = 10.0
    ) -> dict[str, Any]:
        specs = bench_contracts(contracts)
        self._specs = {spec.id: spec for spec in specs}
        sim = Simulator(
            seed=seed, quote_interval=None, ping_interval=ping_interval, contracts=specs
        )
        while len(sim.account_ids) < accounts:
            sim.add_account(f"BENCH-{len(sim.account_ids) + 1:03d}")
        await sim.start(port=0)
        self.sim = sim
        return {
            "base_url": sim.base_url,
            "user_hub_url": sim.user_hub_url,
            "market_hub_url": sim.market_hub_url,
            "account_ids": sim.account_ids[:accounts],
            "contracts": [
                {
                    "id": spec.id,
                    "tick_size": str(spec.tick_size),
                    "tick_value": str(spec.tick_value),
                    "price": str(spec.start_price),
                }
                for spec in specs
            ],
        }

    async def cmd_wait_subscribed(
        self, accounts: list[int], quotes: list[str], timeout: float = 30.0
    ) -> None:
        sim = self._sim()
        for account_id in accounts:
            await sim.wait_for_subscription("user", "SubscribePositions", account_id, timeout)
        for contract_id in quotes:
            await sim.wait_for_subscription(
                "market", "SubscribeContractQuotes", contract_id, timeout
            )

    async def cmd_wait_requests(self, endpoint: str, count: int, timeout: float = 30.0) -> int:
        """Wait until `count` calls of `endpoint` arrived (set-up only: it polls)."""
        sim = self._sim()
        deadline = time.monotonic() + timeout
        while True:
            seen = sum(1 for r in sim.requests if r.endpoint == endpoint)
            if seen >= count or time.monotonic() > deadline:
                return seen
            await asyncio.sleep(0.02)

    async def cmd_push_positions(self, positions: list[tuple[int, str, int, str]]) -> None:
        sim = self._sim()
        for account_id, contract_id, size, price in positions:
            sim.push_position(account_id, contract_id, size, price)

    async def cmd_push_quotes(self, quotes: list[tuple[str, str]]) -> None:
        sim = self._sim()
        for contract_id, price in quotes:
            sim.push_quote(contract_id, price)

    async def cmd_idle(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._forget()

    async def cmd_stop(self) -> None:
        if self.sim is not None:
            await self.sim.stop()
        self.stopped.set()

    def _forget(self) -> None:
        # The benchmark reads what it needs at once; dropping the rest keeps memory flat.
        sim = self._sim()
        sim.requests.clear()
        sim.event_log.clear()

    # --- latency ------------------------------------------------------------------------

    async def cmd_latency(
        self,
        targets: list[tuple[int, str, str]],
        n: int,
        limit: int,
        gap: tuple[float, float] = (0.005, 0.015),
        timeout: float = 5.0,
        seed: int = 1,
    ) -> dict[str, Any]:
        """`n` max-contracts breaches, one at a time, over the (account, contract, price)
        targets.

        Each breach: the position goes back to the limit (no breach), a random pause so
        breaches never fall in step with a timer of the system under test, then the position
        grows to limit + 1 and the clock runs until the partial close for it arrives.
        """
        sim = self._sim()
        rng = random.Random(seed)
        latencies: list[float] = []
        pairs: list[tuple[float, float]] = []
        timeouts = 0
        log = sim.event_log
        for i in range(n):
            account_id, contract_id, price = targets[i % len(targets)]
            sim.push_position(account_id, contract_id, limit, price)
            await asyncio.sleep(rng.uniform(*gap))
            self._forget()
            sim.push_position(account_id, contract_id, limit + 1, price)
            if not log:
                raise RuntimeError(f"nobody is subscribed to positions of {account_id}")
            sent = log[-1][0]
            try:
                request = await sim.wait_for_request(
                    PARTIAL_CLOSE,
                    functools.partial(_is_close_of, account_id=account_id, contract_id=contract_id),
                    timeout,
                    since=sent,
                )
            except TimeoutError:
                timeouts += 1
                continue
            latencies.append(request.received - sent)
            pairs.append((sent, request.received))
        self._forget()
        return {"latencies": latencies, "pairs": pairs, "timeouts": timeouts}

    # --- latency, the way the gateway sends fills -----------------------------------------

    async def cmd_fills(
        self,
        targets: list[tuple[int, str]],
        n: int,
        lots: int,
        pace: tuple[float, float] = (0.4, 0.6),
        accept: tuple[float, float] = (0.005, 0.015),
        timeout: float = 5.0,
        seed: int = 1,
    ) -> dict[str, Any]:
        """`n` breaches through the simulated exchange, paced like a real trader's bursts.

        Each breach: the trader's market order for `lots` contracts is accepted (its
        `GatewayUserOrder`, alone), a random moment later it fills and the gateway sends the
        fill as four events back to back in one burst (order update, trade, position update,
        account update; `GATEWAY_ORDER`). The clock runs from the simulator queueing that
        `GatewayUserPosition` until the `Position/partialCloseContract` for it arrives; the
        exchange then really reduces the position (and sends that fill's events), and the
        trader flattens what is left. Breaches start `pace` seconds apart (random), so the
        system under test stays inside the gateway's 200 calls a minute.
        """
        sim = self._sim()
        rng = random.Random(seed)
        latencies: list[float] = []
        pairs: list[tuple[float, float]] = []
        timeouts = 0
        log = sim.event_log
        next_start = time.monotonic()
        for i in range(n):
            account_id, contract_id = targets[i % len(targets)]
            await asyncio.sleep(max(0.0, next_start - time.monotonic()))
            next_start = time.monotonic() + rng.uniform(*pace)
            self._forget()
            events = self._held(
                lambda a=account_id, c=contract_id: sim.submit_order(a, c, OrderSide.BID, lots)
            )
            accepted, fill = events[:1], events[1:]
            self._send(accepted)
            await asyncio.sleep(rng.uniform(*accept))
            self._send(fill)
            sent = next(
                (at for at, _, target, _ in reversed(log) if target == "GatewayUserPosition"),
                None,
            )
            if sent is None:
                raise RuntimeError(f"nobody is subscribed to positions of {account_id}")
            try:
                request = await sim.wait_for_request(
                    PARTIAL_CLOSE,
                    functools.partial(_is_close_of, account_id=account_id, contract_id=contract_id),
                    timeout,
                    since=sent,
                )
                latencies.append(request.received - sent)
                pairs.append((sent, request.received))
            except TimeoutError:
                timeouts += 1
            # The trader flattens what is left (riskman's close has been answered by now: the
            # simulator records a request once it has answered it).
            if sim.positions(account_id) and any(
                p.contract_id == contract_id for p in sim.positions(account_id)
            ):
                self._send(self._held(lambda a=account_id, c=contract_id: sim.close_position(a, c)))
        self._forget()
        return {"latencies": latencies, "pairs": pairs, "timeouts": timeouts}

    def _held(self, act: Any) -> list[UserEvent]:
        """Run `act` on the exchange and return the user events it made instead of sending
        them (the benchmark sends them itself, in the gateway's order and timing)."""
        exchange = self._sim()._exchange
        held: list[UserEvent] = []
        emit = exchange._emit
        exchange._emit = held.append
        try:
            act()
        finally:
            exchange._emit = emit
        return held

    def _send(self, events: list[UserEvent]) -> None:
        """Queue `events` back to back (one burst: the hub writes them in one frame), the
        events of a fill in the gateway's order, each kind's own events in exchange order."""
        sim = self._sim()
        opened = [e for e in events if e.target == "GatewayUserOrder" and not _is_fill(e)]
        rest = [e for e in events if e not in opened]
        rest.sort(key=lambda e: GATEWAY_ORDER.index(e.target))
        for event in opened + rest:
            sim._on_user_event(event)

    # --- quote throughput ---------------------------------------------------------------

    async def cmd_quote_load(
        self,
        rate: float,
        seconds: float,
        contracts: list[str],
        probes: list[tuple[int, str, str]],
        probe_every: float = 0.25,
        band_ticks: int = 4,
        drain: float = 3.0,
    ) -> dict[str, Any]:
        """Stream `rate` quotes/s round-robin over `contracts` for `seconds`, and measure the
        event lag with probes.

        Every quote moves a contract within `band_ticks` above its start price (where no rule
        breaches). A probe moves one of the `probes` contracts (account, contract, breach
        price) to a price where RULE-004 must close it, and keeps sending that price for the
        contract until the close call arrives: its latency is the time from the first
        breaching quote to the close call, i.e. the event lag a breach waits behind the quote
        stream plus the enforcement itself. Probes rotate over the contracts so a late
        duplicate close for one probe cannot be taken for the next.
        """
        sim = self._sim()
        log, requests = sim.event_log, sim.requests
        self._forget()
        bands = []
        for contract_id in contracts:
            spec = self._specs[contract_id]
            bands.append([spec.start_price + spec.tick_size * k for k in range(band_ticks + 1)])
        breach = {contract_id: Decimal(price) for _, contract_id, price in probes}
        count = len(contracts)
        lags: list[float] = []
        probe_index = 0
        probe_contract: str | None = None
        probe_sent = 0.0
        next_probe = time.monotonic() + probe_every / 2
        sent = 0
        behind = 0.0
        start = time.monotonic()
        end = start + seconds
        turn = 0
        while True:
            now = time.monotonic()
            if now >= end:
                break
            due = int((now - start) * rate)
            behind = max(behind, (due - sent) / rate)
            while sent < due:
                index = turn % count
                contract_id = contracts[index]
                if contract_id == probe_contract:
                    sim.push_quote(contract_id, breach[contract_id])
                else:
                    band = bands[index]
                    sim.push_quote(contract_id, band[(turn // count) % len(band)])
                sent += 1
                turn += 1
            if probe_contract is None and now >= next_probe:
                _, probe_contract, _ = probes[probe_index % len(probes)]
                probe_index += 1
                sim.push_quote(probe_contract, breach[probe_contract])
                probe_sent = log[-1][0]
                sent += 1
            log.clear()
            if probe_contract is not None:
                arrived = _close_for(requests, probe_contract, probe_sent)
                requests.clear()
                if arrived is not None:
                    lags.append(arrived - probe_sent)
                    probe_contract = None
                    next_probe = now + probe_every
            else:
                requests.clear()
            await asyncio.sleep(_TICK)
        elapsed = time.monotonic() - start
        unfinished = None
        if probe_contract is not None:
            # The stream stopped with a probe outstanding: wait for it (its lag is what the
            # backlog cost), then put the contract back in its band.
            waited_until = time.monotonic() + drain
            while time.monotonic() < waited_until:
                arrived = _close_for(requests, probe_contract, probe_sent)
                requests.clear()
                if arrived is not None:
                    lags.append(arrived - probe_sent)
                    break
                await asyncio.sleep(0.002)
            else:
                unfinished = time.monotonic() - probe_sent
            index = contracts.index(probe_contract)
            sim.push_quote(probe_contract, bands[index][0])
        self._forget()
        return {
            "sent": sent,
            "elapsed": elapsed,
            "achieved": sent / elapsed if elapsed > 0 else math.nan,
            "generator_behind": behind,
            "lags": lags,
            "unfinished": unfinished,
        }


def _is_fill(event: UserEvent) -> bool:
    return getattr(event.payload, "fill_volume", 0) > 0


def _is_close_of(request: RecordedRequest, account_id: int, contract_id: str) -> bool:
    body = request.body
    return body.get("accountId") == account_id and body.get("contractId") == contract_id


def _close_for(requests: list[RecordedRequest], contract_id: str, since: float) -> float | None:
    for request in requests:
        if (
            request.endpoint == CLOSE
            and request.received >= since
            and request.body.get("contractId") == contract_id
        ):
            return request.received
    return None


async def _main() -> None:
    loop = asyncio.get_running_loop()
    driver = SimDriver()
    # The orchestrator owns Ctrl+C; this process ends when told to (or when it goes away).
    for signum in (signal.SIGINT,):
        loop.add_signal_handler(signum, lambda: None)
    control = ControlServer("sim", driver, loop, driver.stopped.set)
    control.start()
    await driver.stopped.wait()
    if driver.sim is not None and driver.sim.running:
        await driver.sim.stop()


if __name__ == "__main__":
    asyncio.run(_main())

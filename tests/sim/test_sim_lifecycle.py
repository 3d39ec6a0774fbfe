"""Starting and stopping the simulator, its control API, tokens, throughput and `riskman sim`."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from riskman.core.enums import OrderSide, OrderType
from riskman.core.models import Account
from riskman.sim import SimRejected, Simulator
from riskman.sim.tokens import TokenIssuer

from .conftest import ACCOUNT, MNQ, RS, RawHub, ws_url

REPO = Path(__file__).resolve().parents[2]


async def test_start_and_stop_many_times_leaves_nothing_behind() -> None:
    tasks_before = asyncio.all_tasks()
    threads_before = threading.active_count()

    for _ in range(4):
        sim = Simulator(quote_interval=0.01, ping_interval=0.01)
        await sim.start(port=0)
        raw = await RawHub.open(sim, "market", sim.issue_token())
        await raw.subscribe(sim, "market", "SubscribeContractQuotes", MNQ)
        await sim.stop()
        with pytest.raises(ConnectionClosed):
            while True:
                await raw.record(skip_pings=False, timeout=3)
        assert sim.connection_count("market") == 0 and not sim.running

    assert asyncio.all_tasks() == tasks_before
    assert threading.active_count() == threads_before


async def test_a_restarted_simulator_keeps_its_state_on_a_new_port() -> None:
    async with Simulator() as sim:
        first_url = sim.base_url
        sim.submit_order(ACCOUNT, MNQ, OrderSide.BID, 2)
    with pytest.raises(RuntimeError):
        sim.base_url  # noqa: B018 - not running: no URL

    await sim.start()
    try:
        assert sim.base_url.startswith("http://127.0.0.1:")
        assert sim.user_hub_url == f"{sim.base_url}/hubs/user"
        assert sim.market_hub_url == f"{sim.base_url}/hubs/market"
        assert [p.size for p in sim.positions(ACCOUNT)] == [2]
        async with httpx.AsyncClient(base_url=sim.base_url) as client:
            assert (await client.get("/api/Status/ping")).status_code == 200
    finally:
        await sim.stop()
    assert first_url  # the old URL was real too


async def test_starting_on_a_port_in_use_raises_oserror() -> None:
    async with Simulator() as first:
        second = Simulator()
        with pytest.raises(OSError):
            await second.start(port=first.port)
        assert not second.running


async def test_stop_releases_replies_held_by_a_delay_fault(sim: Simulator) -> None:
    sim.faults.delay("Account/search", 60.0)
    token = sim.issue_token()

    async with httpx.AsyncClient(base_url=sim.base_url, timeout=30) as client:
        pending = asyncio.create_task(
            client.post(
                "/api/Account/search",
                json={"onlyActiveAccounts": True},
                headers={"Authorization": f"Bearer {token}"},
            )
        )
        await sim.wait_for_request("Account/search")
        started = time.monotonic()
        await sim.stop()
        assert time.monotonic() - started < 5
        reply = await asyncio.wait_for(pending, 5)
    assert reply.status_code == 200


async def test_custom_accounts_and_add_account() -> None:
    accounts = [Account(id=77, name="XFA-1", balance=Decimal(0), can_trade=False, simulated=False)]
    sim = Simulator(accounts=accounts)

    new_id = sim.add_account("EVAL-100K", balance=Decimal(100000))

    assert sim.account_ids == [77, 78]
    assert sim.account(77).can_trade is False and sim.account(77).simulated is False
    assert sim.balance(new_id) == Decimal(100000)


def test_submit_order_raises_with_the_place_code() -> None:
    sim = Simulator()
    sim.set_price(MNQ, "20000")
    sim.set_bracket_mode(ACCOUNT, "position")

    with pytest.raises(SimRejected) as rejected:
        sim.submit_order(ACCOUNT, MNQ, OrderSide.BID, 1, stop_loss_ticks=10)
    assert rejected.value.code == 2 and rejected.value.order_id is not None

    sim.set_bracket_mode(ACCOUNT, "auto_oco")
    entry = sim.submit_order(
        ACCOUNT,
        MNQ,
        OrderSide.BID,
        1,
        OrderType.LIMIT,
        limit_price=19990,
        custom_tag="e",
        stop_loss_ticks=10,
        take_profit_ticks=20,
    )
    entry_order, *legs = sim.open_orders(ACCOUNT)  # suspended legs included here
    assert entry_order.id == entry and len(legs) == 2
    sim.cancel_order(ACCOUNT, entry)
    assert sim.open_orders(ACCOUNT) == []
    with pytest.raises(SimRejected):
        sim.close_position(ACCOUNT, MNQ)


def test_token_issuer_expiry_claim_revocation_and_forgery() -> None:
    now = [1_000_000.0]
    issuer = TokenIssuer(lifetime=60.0, clock=lambda: now[0])
    token = issuer.issue("demo")
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))

    assert claims["exp"] == 1_000_060 and claims["sub"] == "demo"
    assert issuer.check(token) == "demo"
    now[0] += 59.9
    assert issuer.check(token) == "demo"
    now[0] += 0.2
    assert issuer.check(token) is None and issuer.is_expired(token)

    fresh = issuer.issue("demo")
    forged = f"{header}.{payload}.{signature[:-2]}AA"
    assert issuer.check(forged) is None and not issuer.is_expired(forged)
    issuer.expire_all()
    assert issuer.check(fresh) is None
    later = issuer.issue("demo")
    assert issuer.revoke(later) and issuer.check(later) is None


async def test_push_quote_sustains_thousands_of_frames_per_second(sim: Simulator) -> None:
    count = 5000
    async with websockets.connect(ws_url(sim, "market", sim.issue_token()), compression=None) as ws:
        await ws.send('{"protocol":"json","version":1}' + RS)
        await ws.recv()
        subscribe = {"type": 1, "target": "SubscribeContractQuotes", "arguments": [MNQ]}
        await ws.send(json.dumps(subscribe) + RS)
        await sim.wait_for_subscription("market", "SubscribeContractQuotes", MNQ)
        await ws.recv()  # the snapshot

        async def read_all() -> int:
            records = 0
            while records < count:
                message = await ws.recv()
                assert isinstance(message, str)
                records += message.count(RS)
            return records

        reader = asyncio.create_task(read_all())
        started = time.perf_counter()
        for i in range(count):
            sim.push_quote(MNQ, Decimal(20000) + Decimal("0.25") * (i % 50))
            if i % 50 == 0:
                await asyncio.sleep(0)
        assert await asyncio.wait_for(reader, 20) == count
        elapsed = time.perf_counter() - started

    assert count / elapsed > 1000, f"{count / elapsed:.0f} frames/s"


def test_cli_serves_until_sigint_and_prints_urls_and_credentials() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "riskman.sim.cli", "--port", "0", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(7)]
        text = "".join(lines)
        rest_url = next(line.split()[-1] for line in lines if "REST API" in line)
        assert "/hubs/user" in text and "/hubs/market" in text
        assert "'demo'" in text
        assert httpx.get(f"{rest_url}/api/Status/ping", timeout=5).status_code == 200

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()

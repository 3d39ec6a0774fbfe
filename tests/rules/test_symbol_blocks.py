"""RULE-011 symbol_blocks: exact roots, closes, cancels, symbol locks, config changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from riskman.core.clock import FakeClock
from riskman.core.enums import OrderSide, OrderType
from riskman.core.locks import Lockout, Unlock
from riskman.core.models import Order
from riskman.core.ports import OrderEvent
from riskman.engine.engine import Engine
from riskman.rules.symbol_blocks import SymbolBlocks
from riskman.symbols import display_symbol
from tests.conftest import EngineFactory, make_settings
from tests.fakes import ES, MES, MNQ, NQ, RTY, FakeGateway, open_position, order, position

ACC = 7
OTHER = 8


def blocks(*symbols: str) -> dict[str, Any]:
    return {"symbol_blocks": {"enabled": True, "symbols": list(symbols)}}


async def _engine(make_engine: EngineFactory, rules: dict[str, Any], **top: Any) -> Engine:
    engine: Engine = await make_engine(rules, rule_classes=[SymbolBlocks], **top)
    return engine


async def _order(engine: Engine, gateway: FakeGateway, working: Order) -> None:
    gateway.orders.setdefault(working.account_id, {})[working.id] = working
    await engine.process(OrderEvent(working))


def _locks(engine: Engine, account_id: int = ACC) -> list[Lockout]:
    return [k for k in engine.lockouts.get_lockout_info(account_id) if k.rule == "RULE-011"]


async def _settle(engine: Engine) -> None:
    await engine.actions.wait_idle()
    await engine.drain()


# --- the scenario table ---------------------------------------------------------------------

ENTRY: dict[str, Any] = {
    "side": OrderSide.BID,
    "order_type": OrderType.LIMIT,
    "stop": None,
    "limit": "100",
}
SCENARIOS = [
    # (what, blocked symbols, contract, position or order, locked root or None)
    ("ES blocks an EP position", ["ES"], ES, "position", "EP"),
    ("es (lower case) blocks EP", ["es"], ES, "position", "EP"),
    ("the gateway root EP works too", ["EP"], ES, "position", "EP"),
    ("ES does not block MES", ["ES"], MES, "position", None),
    ("NQ blocks ENQ", ["NQ"], NQ, "position", "ENQ"),
    ("NQ does not block MNQ", ["NQ"], MNQ, "position", None),
    ("RTY blocks a working RTY order", ["RTY"], RTY, "order", "RTY"),
    ("RTY does not block an MNQ order", ["RTY"], MNQ, "order", None),
    ("empty list blocks nothing", [], ES, "position", None),
]


@pytest.mark.parametrize(
    ("what", "symbols", "contract_id", "kind", "root"), SCENARIOS, ids=[s[0] for s in SCENARIOS]
)
async def test_blocked_symbol_is_closed_cancelled_and_locked(
    make_engine: EngineFactory,
    gateway: FakeGateway,
    what: str,
    symbols: list[str],
    contract_id: str,
    kind: str,
    root: str | None,
) -> None:
    engine = await _engine(make_engine, blocks(*symbols))
    if kind == "position":
        await open_position(engine, gateway, position(ACC, contract_id, 1))
    else:
        await _order(engine, gateway, order(ACC, 60, contract_id, **ENTRY))
    await _settle(engine)
    locks = _locks(engine)
    if root is None:
        assert locks == []
        assert gateway.named("close_contract") == [] and gateway.named("cancel_order") == []
        return
    assert [(k.symbol, k.until, k.unlock) for k in locks] == [(root, None, Unlock.CONFIG)]
    assert locks[0].reason == f"{display_symbol(root)} is a blocked symbol ({kind} in it)"
    if kind == "position":
        assert [c.args for c in gateway.named("close_contract")] == [(ACC, contract_id)]
    else:
        assert [c.args for c in gateway.named("cancel_order")] == [(ACC, 60)]
    assert not engine.lockouts.is_locked_out(ACC, None)  # the account itself can still trade


async def test_only_the_blocked_symbols_orders_are_cancelled(
    make_engine: EngineFactory, gateway: FakeGateway, tmp_path: Path
) -> None:
    engine = await make_engine({}, rule_classes=[SymbolBlocks])
    await _order(engine, gateway, order(ACC, 61, MNQ, **ENTRY))
    await _order(engine, gateway, order(ACC, 62, ES, **ENTRY))
    await open_position(engine, gateway, position(ACC, ES, 2, "5000"))
    await engine.apply_settings(make_settings(tmp_path, blocks("ES")))
    await _settle(engine)
    assert [c.args for c in gateway.named("close_contract")] == [(ACC, ES)]
    assert [c.args for c in gateway.named("cancel_order")] == [(ACC, 62)]
    assert _locks(engine)[0].reason == "ES is a blocked symbol (position in it)"


async def test_lock_is_not_issued_again_and_the_gate_closes_new_positions(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await _engine(make_engine, blocks("ES"))
    await open_position(engine, gateway, position(ACC, ES, 1, "5000"))
    await _settle(engine)
    await open_position(engine, gateway, position(ACC, ES, 1, "5000"))
    await _order(engine, gateway, order(ACC, 63, ES, **ENTRY))
    await _settle(engine)
    lock_records = [r for r in engine.recent_log() if r.action == "lockout"]
    assert len(lock_records) == 1
    closes = [r.rule for r in engine.recent_log() if r.action == "close"]
    assert sorted(closes) == ["LOCKOUT", "RULE-011"]
    assert [c.args for c in gateway.named("cancel_order")] == [(ACC, 63)]


# --- configuration --------------------------------------------------------------------------


async def test_unblocking_a_symbol_waits_for_the_reset_then_clears_the_lock(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock, tmp_path: Path
) -> None:
    engine = await _engine(make_engine, blocks("ES", "RTY"))
    await open_position(engine, gateway, position(ACC, ES, 1, "5000"))
    await open_position(engine, gateway, position(ACC, RTY, 1, "2400"))
    await _settle(engine)
    assert sorted(k.symbol or "" for k in _locks(engine)) == ["EP", "RTY"]

    # Unblocking is looser: it waits for the daily reset (issue 13).
    await engine.apply_settings(make_settings(tmp_path, blocks("RTY")))
    await _settle(engine)
    assert sorted(k.symbol or "" for k in _locks(engine)) == ["EP", "RTY"]
    assert [(p.key, p.old, p.new) for p in engine.pending] == [
        ("rules.symbol_blocks.symbols", ["EP", "RTY"], ["RTY"])
    ]
    await clock.set(engine.resets.next_reset())
    await _settle(engine)
    assert [k.symbol for k in _locks(engine)] == ["RTY"]
    assert engine.pending == ()
    await open_position(engine, gateway, position(ACC, ES, 1, "5000"))
    await _settle(engine)
    assert engine.state.get_position(ACC, ES) is not None
    assert len(gateway.named("close_contract")) == 2

    await engine.apply_settings(make_settings(tmp_path, {"symbol_blocks": {"enabled": False}}))
    await _settle(engine)
    assert [k.symbol for k in _locks(engine)] == ["RTY"]
    await clock.set(engine.resets.next_reset())
    await _settle(engine)
    assert _locks(engine) == []


async def test_symbol_added_to_the_list_closes_what_is_open(
    make_engine: EngineFactory, gateway: FakeGateway, tmp_path: Path
) -> None:
    engine = await _engine(make_engine, blocks())
    await open_position(engine, gateway, position(ACC, MES, 3, "5000"))
    await _settle(engine)
    await engine.apply_settings(make_settings(tmp_path, blocks("mes")))
    await _settle(engine)
    assert [c.args for c in gateway.named("close_contract")] == [(ACC, MES)]
    assert [k.symbol for k in _locks(engine)] == ["MES"]


async def test_per_account_symbol_override(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await _engine(
        make_engine,
        blocks(),
        accounts=[ACC, {"id": OTHER, "rules": {"symbol_blocks": {"symbols": ["ES"]}}}],
    )
    await open_position(engine, gateway, position(ACC, ES, 1, "5000"))
    await open_position(engine, gateway, position(OTHER, ES, 1, "5000"))
    await _settle(engine)
    assert [c.args for c in gateway.named("close_contract")] == [(OTHER, ES)]
    assert _locks(engine, ACC) == [] and [k.symbol for k in _locks(engine, OTHER)] == ["EP"]


# --- restart --------------------------------------------------------------------------------


async def test_restart_keeps_the_symbol_lock_and_still_enforces(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await _engine(make_engine, blocks("ES"))
    await open_position(engine, gateway, position(ACC, ES, 1, "5000"))
    await _settle(engine)
    await engine.close()

    again = await _engine(make_engine, blocks("ES"))
    assert [k.symbol for k in _locks(again)] == ["EP"]
    await open_position(again, gateway, position(ACC, ES, 1, "5000"))
    await open_position(again, gateway, position(ACC, MES, 1, "5000"))
    await gateway.wait_call("close_contract", 2)
    await _settle(again)
    assert [c.args for c in gateway.named("close_contract")] == [(ACC, ES), (ACC, ES)]
    assert again.state.get_position(ACC, MES) is not None


async def test_position_opened_while_riskman_was_down_is_closed_at_start(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await _engine(make_engine, blocks())
    await open_position(engine, gateway, position(ACC, RTY, 1, "2400"))
    await _settle(engine)
    await engine.close()

    again = await _engine(make_engine, blocks("RTY"))
    await gateway.wait_call("close_contract")
    await _settle(again)
    assert [c.args for c in gateway.named("close_contract")] == [(ACC, RTY)]
    assert [k.symbol for k in _locks(again)] == ["RTY"]


async def test_status_lists_blocked_symbols_and_locks(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await _engine(make_engine, blocks("ES", "RTY"))
    rule = engine.rules[0]
    assert (rule.status(ACC).value, rule.status(ACC).limit) == (
        "0 open in blocked symbols",
        "ES, RTY",
    )
    await open_position(engine, gateway, position(ACC, ES, 1, "5000"))
    assert rule.status(ACC).detail == "locked: ES"

"""What goes over the control socket, as JSON: the status summary, the enforcement log, and
the screens' full `EngineSnapshot` (lossless both ways, for the attached terminal).

Money is a decimal string ("-120.50"), never a float; times are ISO 8601 in UTC.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import TypeAdapter

from riskman.engine.actions import EnforcementRecord
from riskman.engine.lockouts import LockoutChange
from riskman.engine.ports import FeedHealth
from riskman.engine.snapshot import (
    AccountView,
    Breach,
    EngineSnapshot,
    LimitWarning,
    LockView,
    ResetDone,
)

API_VERSION = 1
SNAPSHOT = TypeAdapter(EngineSnapshot)
NOT_GUARDED = "NOT GUARDED"


def snapshot_to_json(snapshot: EngineSnapshot) -> bytes:
    return SNAPSHOT.dump_json(snapshot, by_alias=True)


def snapshot_from_json(data: str | bytes) -> EngineSnapshot:
    """The snapshot a `snapshot_to_json` made, equal to the engine's (raises ValueError)."""
    return SNAPSHOT.validate_json(data)


CHANGES: dict[str, TypeAdapter[Any]] = {
    "enforcement": TypeAdapter(EnforcementRecord),
    "lockout": TypeAdapter(LockoutChange),
    "reset": TypeAdapter(ResetDone),
    "breach": TypeAdapter(Breach),
    "warning": TypeAdapter(LimitWarning),
}
"""The engine's news a stream frame carries beside the snapshot (for the terminal's toasts)."""


def change_to_json(kind: str, change: Any) -> bytes:
    return b'{"kind":"%s","change":%s}' % (kind.encode(), CHANGES[kind].dump_json(change))


def change_from_json(item: Mapping[str, Any]) -> Any:
    """One entry of a frame's `changes` back as the engine's object (raises ValueError)."""
    adapter = CHANGES.get(str(item.get("kind")))
    if adapter is None:
        raise ValueError(f"unknown change kind {item.get('kind')!r}")
    return adapter.validate_python(item.get("change"))


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def hub_json(health: FeedHealth | None) -> dict[str, Any] | None:
    if health is None:
        return None
    return {
        "state": health.state.value,
        "trusted": health.trusted,
        "last_event_age": health.last_event_age,
        "reconnects": health.reconnects,
        "detail": health.detail,
        "since": _time(health.since),
    }


def lock_json(lock: LockView) -> dict[str, Any]:
    return {
        "id": lock.id,
        "rule": lock.rule,
        "kind": lock.kind,
        "reason": lock.reason,
        "symbol": lock.symbol,
        "until": _time(lock.until),
        "ends": lock.unlock,
    }


def account_json(view: AccountView, guarded: bool) -> dict[str, Any]:
    return {
        "id": view.account_id,
        "name": view.name,
        "status": view.status if guarded else NOT_GUARDED,
        "status_reason": view.status_reason,
        "can_trade": view.can_trade,
        "balance": _money(view.balance),
        "realized": _money(view.realized),
        "open": _money(view.open_pnl),
        "open_complete": view.open_complete,
        "total": _money(view.total),
        "locks": [lock_json(lock) for lock in view.locks],
        "trades": {
            "minute": view.counts.minute,
            "hour": view.counts.hour,
            "session": view.counts.session,
        },
        "positions": [
            {
                "contract": p.contract_id,
                "symbol": p.symbol,
                "side": p.side,
                "size": p.size,
                "average": _money(p.average),
                "open": _money(p.open_pnl),
            }
            for p in view.positions
        ],
    }


def status_json(
    snapshot: EngineSnapshot,
    *,
    started: datetime,
    phase: str,
    guarded: Mapping[int, bool],
    unguarded: Iterable[tuple[int, str]] = (),
    pending: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`GET /v1/status`. `guarded` says per listed account whether the engine guards it;
    `unguarded` adds accounts the gateway reports that riskman does not guard."""
    # Not armed (logging in, hub down or reconnecting): nothing enforces from the live stream,
    # so no account is guarded right now.
    accounts = [
        account_json(v, snapshot.armed and guarded.get(v.account_id, True))
        for v in snapshot.accounts
    ]
    listed = {v.account_id for v in snapshot.accounts}
    for account_id, name in unguarded:
        if account_id not in listed:
            accounts.append(
                {"id": account_id, "name": name, "status": NOT_GUARDED, "locks": [], "trades": {}}
            )
    return {
        "version": API_VERSION,
        "armed": snapshot.armed,
        "phase": phase,
        "pid": os.getpid(),
        "started": started.isoformat(),
        "at": snapshot.at.isoformat(),
        "trading_day": snapshot.trading_day.isoformat(),
        "next_reset": snapshot.next_reset.isoformat(),
        "hubs": {"user": hub_json(snapshot.user_feed), "market": hub_json(snapshot.market_feed)},
        "accounts": accounts,
        "pending": list(pending or []),
    }

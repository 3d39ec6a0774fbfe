"""`riskman status`: one look at the running engine, for people, scripts and monitoring.

Exit 0: armed (logged in, subscribed, reconciled, both hubs connected); 1: an engine answers
but is not armed, or a hub is down or stale; 3: no engine answers.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

from riskman.config import Settings
from riskman.control.client import ApiError, ControlClient, NotAnswering

EXIT_ARMED = 0
EXIT_NOT_ARMED = 1
EXIT_NONE = 3


def verdict(status: dict[str, Any]) -> tuple[int, str]:
    """The exit code and why, from a `GET /v1/status` answer."""
    if not status.get("armed"):
        return EXIT_NOT_ARMED, f"NOT ARMED ({status.get('phase', 'unknown')})"
    hubs = {hub.get("hub"): hub for hub in status.get("hubs") or []}
    bad = [
        f"{name} hub {hubs[name]['state'] if name in hubs else 'not started'}"
        for name in ("user", "market")
        if hubs.get(name, {}).get("state") != "connected"
    ]
    if bad:
        return EXIT_NOT_ARMED, "DEGRADED: " + ", ".join(bad)
    return EXIT_ARMED, "ARMED"


def _uptime(started: str) -> str:
    try:
        seconds = int((datetime.now(UTC) - datetime.fromisoformat(started)).total_seconds())
    except ValueError:
        return "?"
    hours, rest = divmod(max(0, seconds), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def render(status: dict[str, Any], socket: str) -> str:
    _code, word = verdict(status)
    lines = [
        f"riskman {word} · pid {status.get('pid')} · up {_uptime(str(status.get('started')))}"
        f" · {socket}"
    ]
    for hub in status.get("hubs") or []:
        lines.append(f"  {hub['hub']} hub: {hub['state']}")
    for account in status.get("accounts", []):
        pnl = ""
        if account.get("total") is not None:
            pnl = (
                f"  realized {account['realized']}  open {account['open']}"
                f"  total {account['total']}"
            )
        trades = account.get("trades") or {}
        count = f"  trades {trades['session']}" if "session" in trades else ""
        lines.append(f"  {account['id']} {account['name']}: {account['status']}{pnl}{count}")
        for lock in account.get("locks", []):
            ends = lock["until"] or lock["unlock"]
            lines.append(f"    {lock['kind']} {lock['rule']}: {lock['reason']} (until {ends})")
    for change in status.get("pending", []):
        lines.append(f"  pending: {change}")
    return "\n".join(lines)


async def fetch_status(settings: Settings, timeout: float = 3.0) -> dict[str, Any]:
    async with ControlClient.for_settings(settings, timeout=timeout) as client:
        return await client.status()


def run_status(settings: Settings, *, as_json: bool) -> int:
    try:
        status = asyncio.run(fetch_status(settings))
    except NotAnswering as exc:
        print(f"riskman: {exc}", file=sys.stderr)
        return EXIT_NONE
    except ApiError as exc:
        print(f"riskman: the engine answered {exc.status}: {exc}", file=sys.stderr)
        return EXIT_NOT_ARMED
    from riskman.control.paths import socket_path

    if as_json:
        print(json.dumps(status, indent=2))
    else:
        print(render(status, str(socket_path(settings))))
    return verdict(status)[0]

"""The control API's client: httpx over the engine's Unix socket, and its WebSocket stream.

Used by `riskman status` and by the attached terminal. Every failure to reach the engine is
`NotAnswering` (one line: what and where); an answer the engine refused is `ApiError` with
its HTTP status and message.
"""

from __future__ import annotations

import dataclasses
import json
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import unix_connect
from websockets.exceptions import WebSocketException

from riskman.config import Settings
from riskman.control import wire
from riskman.control.interface import (
    AccountsPut,
    AccountsState,
    AdminState,
    Cleared,
    LockEntry,
    Notice,
    RulesState,
    SaveResult,
    SchedulePut,
    ScheduleState,
    SelfLock,
)
from riskman.control.paths import socket_path
from riskman.core.views import EnforcementRecord, EngineSnapshot
from riskman.engine.engine import LOG_KEEP

TIMEOUT = 5.0


class NotAnswering(Exception):
    """No engine answers on the socket (none runs, or it hangs)."""


class ApiError(Exception):
    def __init__(self, status: int, message: str, data: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.data = dict(data or {})


@dataclass(frozen=True, slots=True)
class Frame:
    """One message of the stream: the engine's snapshot and the news since the last one."""

    seq: int
    snapshot: EngineSnapshot
    changes: list[Any] = field(default_factory=list)
    """The engine's news since the last frame (locks, enforcement records, resets)."""
    notices: list[Notice] = field(default_factory=list)
    """What the screens would toast (the in-process `Listener`'s notices)."""


class ControlClient:
    """An async client of one engine's control API (use `async with`, or call `aclose()`)."""

    def __init__(self, path: Path, *, timeout: float = TIMEOUT) -> None:
        self.path = path
        self.token: str | None = None
        self._http = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(path)),
            base_url="http://riskman",
            timeout=timeout,
        )

    @classmethod
    def for_settings(cls, settings: Settings, *, timeout: float = TIMEOUT) -> ControlClient:
        return cls(socket_path(settings), timeout=timeout)

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- plumbing --------------------------------------------------------------------------

    async def request(self, method: str, url: str, *, json_body: Any = None, **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = await self._http.request(
                method,
                url,
                json=json_body,
                params={k: v for k, v in params.items() if v is not None},
                headers=headers,
            )
        except (httpx.TransportError, OSError) as exc:
            raise NotAnswering(f"no riskman engine answers on {self.path} ({_why(exc)})") from None
        try:
            data = response.json()
        except ValueError:
            data = {"error": response.text[:200]}
        if response.status_code >= 400:
            message = data.get("error") if isinstance(data, Mapping) else None
            raise ApiError(response.status_code, str(message or response.reason_phrase), data)
        return data

    # --- read-only -------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/v1/status")
        return result

    async def log(self, since: int | None = None, limit: int | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/v1/log", since=since, limit=limit)
        return result

    async def report(self, day: str | None = None) -> dict[str, Any]:
        """A trading day's summary and breach reports (default: the current day)."""
        result: dict[str, Any] = await self.request("GET", "/v1/report", day=day)
        return result

    async def history(self, days: int = 30) -> dict[str, Any]:
        """The last `days` finished trading days (`{"days": [...]}`, newest first)."""
        result: dict[str, Any] = await self.request("GET", "/v1/history", days=days)
        return result

    async def breach_report(self, account: int, rule: str, at: str) -> dict[str, Any]:
        """The breach report of one enforcement-log entry (`at`: its ISO time)."""
        result: dict[str, Any] = await self.request(
            "GET", "/v1/report/breach", account=account, rule=rule, at=at
        )
        return result

    async def snapshot(self) -> EngineSnapshot:
        return wire.snapshot_from_json(json.dumps(await self.request("GET", "/v1/snapshot")))

    @asynccontextmanager
    async def stream(self) -> AsyncIterator[AsyncIterator[Frame]]:
        """`async with client.stream() as frames: async for frame in frames: ...`; the
        iteration ends when the engine closes the stream; NotAnswering when it cannot open."""
        try:
            connection = await unix_connect(
                str(self.path), "ws://riskman/v1/stream", open_timeout=TIMEOUT, max_size=None
            )
        except (OSError, WebSocketException, TimeoutError) as exc:
            raise NotAnswering(f"no riskman engine answers on {self.path} ({_why(exc)})") from None

        async def frames() -> AsyncIterator[Frame]:
            # The engine sends its log whole once, then the new lines: kept here, newest first.
            lines: deque[EnforcementRecord] = deque(maxlen=LOG_KEEP)
            try:
                async for message in connection:
                    data = json.loads(message)
                    if data.get("log_full"):
                        lines.clear()
                    lines.extendleft(reversed(wire.LOG.validate_python(data.get("log", []))))
                    snapshot = wire.SNAPSHOT.validate_python(data["snapshot"])
                    yield Frame(
                        seq=int(data["seq"]),
                        snapshot=dataclasses.replace(snapshot, log=tuple(lines)),
                        changes=[wire.change_from_json(item) for item in data["changes"]],
                        notices=[Notice(**item) for item in data.get("notices", [])],
                    )
            except WebSocketException:
                return

        try:
            yield frames()
        finally:
            await connection.close()

    # --- admin (the interface's commands; see riskman.control.interface) ------------------

    async def admin_state(self) -> AdminState:
        return AdminState.model_validate(await self.request("GET", "/v1/admin/state"))

    async def lock(self, for_: str, account: int | None = None) -> list[SelfLock]:
        """Lock me out (no password): every guarded account when `account` is None."""
        data = await self.request("POST", "/v1/lock", json_body={"for": for_, "account": account})
        return [SelfLock.model_validate(item) for item in data["locked"]]

    async def login(self, password: str) -> None:
        """Open an admin session (ApiError 401: wrong password, 429: throttled)."""
        data = await self.request("POST", "/v1/admin/login", json_body={"password": password})
        self.token = str(data["token"])

    async def first_password(self, password: str) -> None:
        """Set the first admin password (only while none is set: ApiError 409 once one is)
        and open an admin session with it."""
        data = await self.request(
            "POST", "/v1/admin/first-password", json_body={"password": password}
        )
        self.token = str(data["token"])

    async def logout(self) -> None:
        if self.token is not None:
            try:
                await self.request("POST", "/v1/admin/logout")
            finally:
                self.token = None

    async def audit(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Newest first: the interface's AuditEntry fields and the caller's `uid`."""
        data = await self.request("GET", "/v1/admin/audit", limit=limit)
        return list(data["records"])

    async def rules(self) -> RulesState:
        return RulesState.model_validate(await self.request("GET", "/v1/admin/rules"))

    async def set_rules(
        self, rules: Mapping[str, Any], *, account: int | None = None, drop_own: bool = False
    ) -> SaveResult:
        body: Any = (
            dict(rules)
            if account is None and not drop_own
            else {"account": account, "rules": dict(rules), "drop_own": drop_own}
        )
        return SaveResult.model_validate(
            await self.request("PUT", "/v1/admin/rules", json_body=body)
        )

    async def accounts(self) -> AccountsState:
        return AccountsState.model_validate(await self.request("GET", "/v1/admin/accounts"))

    async def set_accounts(self, ids: list[int], *, guard_all: bool = False) -> SaveResult:
        body = AccountsPut(guard_all=guard_all, ids=ids).model_dump(mode="json")
        return SaveResult.model_validate(
            await self.request("PUT", "/v1/admin/accounts", json_body=body)
        )

    async def lockouts(self) -> list[LockEntry]:
        data = await self.request("GET", "/v1/admin/lockouts")
        return [LockEntry.model_validate(item) for item in data["lockouts"]]

    async def clear_lockout(self, lock_id: int, reason: str) -> Cleared:
        """Ask for a lock to end: it does after admin.unlock_delay (`request`, `due`)."""
        data = await self.request(
            "POST", f"/v1/admin/lockouts/{lock_id}/clear", json_body={"reason": reason}
        )
        return Cleared.model_validate(data)

    async def withdraw_unlock(self, request_id: int) -> None:
        await self.request("POST", f"/v1/admin/unlocks/{request_id}/withdraw")

    async def cancel_pending(self, key: str, account: int | None = None) -> SaveResult:
        """Give up a pending loosening: the value in force is written back to the file."""
        body = {"key": key, "account": account}
        return SaveResult.model_validate(
            await self.request("POST", "/v1/admin/pending/cancel", json_body=body)
        )

    async def schedule(self) -> ScheduleState:
        return ScheduleState.model_validate(await self.request("GET", "/v1/admin/schedule"))

    async def set_schedule(self, change: SchedulePut) -> SaveResult:
        body = change.model_dump(mode="json", exclude_none=True)
        return SaveResult.model_validate(
            await self.request("PUT", "/v1/admin/schedule", json_body=body)
        )

    async def set_password(self, password: str) -> None:
        await self.request("POST", "/v1/admin/password", json_body={"password": password})


def _why(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError) or "No such file" in str(exc):
        return "no socket file"
    if isinstance(exc, ConnectionRefusedError) or "Connection refused" in str(exc):
        return "connection refused"
    if isinstance(exc, (httpx.TimeoutException, TimeoutError)):
        return "timed out"
    if isinstance(exc, PermissionError) or "Permission denied" in str(exc):
        return "permission denied: is this user in the socket's group?"
    return str(exc) or type(exc).__name__

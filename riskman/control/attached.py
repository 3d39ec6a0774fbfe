"""The interface implemented over a running engine's control socket: the attached terminal.

The screens see the engine's snapshots as the stream brings them (the same views as in-process,
decoded by `wire`); admin commands are the control API's admin verbs. When the stream stops
(the engine was killed, or it hangs and sends nothing for `LOST_AFTER` seconds) `lost` says so
at once and the terminal keeps trying to attach again, every `RETRY_EVERY` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from riskman.config import Settings
from riskman.control.client import ApiError, ControlClient, NotAnswering
from riskman.control.interface import (
    AccountsPut,
    AccountsState,
    AdminState,
    AuditEntry,
    CancelPending,
    CannotStart,
    Cleared,
    ClearLocks,
    Conflict,
    Control,
    ControlError,
    EngineInfo,
    HistoryRow,
    Invalid,
    Listener,
    LockEntry,
    LockRequest,
    LogEntry,
    LoginAnswer,
    LoginRequest,
    PasswordChange,
    ReportAnswer,
    ReportQuery,
    RulesPut,
    RulesState,
    SaveResult,
    SchedulePut,
    ScheduleState,
    SelfLock,
    Session,
    Throttled,
    Unauthorized,
    Unavailable,
)
from riskman.control.paths import socket_path
from riskman.core.views import AccountView, EngineSnapshot

log = logging.getLogger("riskman.tui")

LOST_AFTER = 1.5
"""Seconds without a frame (the engine sends one at least every second) before the terminal
says NOT GUARDED: within 2 s of the engine stopping or hanging, redraw included."""
RETRY_EVERY = 0.5
"""Seconds between two attempts to attach again."""
REQUEST_TIMEOUT = 5.0


class AttachedControl(Control):
    mode = "attached"

    def __init__(
        self,
        settings: Settings,
        config_path: Path,
        *,
        path: Path | None = None,
        lost_after: float = LOST_AFTER,
        retry_every: float = RETRY_EVERY,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.path = path or socket_path(settings)
        self.lost_after = lost_after
        self.retry_every = retry_every
        self._client = ControlClient(self.path, timeout=REQUEST_TIMEOUT)
        self._info: EngineInfo | None = None
        self._snapshot: EngineSnapshot | None = None
        self._listeners: list[Listener] = []
        self._lost: str | None = None
        self._last_frame = 0.0
        self._follow: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._failures = 0
        self.attaches = 0
        """How many times the stream was opened (1 at start; more after re-attaching)."""

    # --- life cycle -----------------------------------------------------------------------

    @property
    def where(self) -> str:
        return f"riskman on {self.path}"

    @property
    def info(self) -> EngineInfo | None:
        return self._info

    @property
    def lost(self) -> str | None:
        return self._lost

    async def start(self) -> None:
        """Attach: the engine's status, then its stream (CannotStart: nothing answers)."""
        try:
            await self._attach_info()
        except NotAnswering as exc:
            raise CannotStart(str(exc)) from None
        except ApiError as exc:
            raise CannotStart(f"the engine on {self.path} refused: {exc}") from None
        self._last_frame = time.monotonic()
        loop = asyncio.get_running_loop()
        self._follow = loop.create_task(self._follow_stream(), name="riskman-attached-stream")
        self._watch = loop.create_task(self._watchdog(), name="riskman-attached-watchdog")

    async def stop(self) -> None:
        """Detach: the engine goes on."""
        for task in (self._follow, self._watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._follow = self._watch = None
        with contextlib.suppress(Exception):
            await self._client.logout()
        await self._client.aclose()

    async def _attach_info(self) -> None:
        status = await self._client.status()
        self._info = EngineInfo(
            pid=int(status.get("pid") or 0),
            started=datetime.fromisoformat(str(status["started"])),
            config=str(status.get("config") or self.config_path),
        )

    async def _follow_stream(self) -> None:
        """Read frames while the stream lasts; attach again after it ends."""
        while True:
            try:
                async with self._client.stream() as frames:
                    self.attaches += 1
                    if self._lost is not None:
                        with contextlib.suppress(NotAnswering, ApiError, KeyError, ValueError):
                            await self._attach_info()
                    async for frame in frames:
                        self._take(frame.snapshot)
                        for notice in frame.notices:
                            self._tell(notice)
            except NotAnswering:
                pass
            except Exception:
                log.exception("the engine's stream failed")
            self._set_lost("riskman stopped answering on its control socket")
            await asyncio.sleep(self.retry_every)

    async def _watchdog(self) -> None:
        """NOT GUARDED when no frame came for `lost_after` seconds (a hung engine)."""
        while True:
            await asyncio.sleep(min(0.05, self.lost_after / 4))
            if self._lost is None and time.monotonic() - self._last_frame > self.lost_after:
                self._set_lost(f"riskman sent nothing for {self.lost_after:.1f} s: it hangs")
                task = self._follow
                if task is not None:
                    # Drop the silent connection; the follower attaches again.
                    self._follow = asyncio.get_running_loop().create_task(
                        self._follow_stream(), name="riskman-attached-stream"
                    )
                    task.cancel()

    def _set_lost(self, why: str) -> None:
        if self._lost is None:
            log.warning("%s: NOT GUARDED until it answers again", why)
            self._lost = why
            self._tell(None)

    def _take(self, snapshot: EngineSnapshot) -> None:
        self._snapshot = _reuse(self._snapshot, snapshot)
        self._last_frame = time.monotonic()
        if self._lost is not None:
            log.info("attached again to riskman on %s", self.path)
            self._lost = None
        self._tell(None)

    # --- views ----------------------------------------------------------------------------

    def snapshot(self) -> EngineSnapshot | None:
        return self._snapshot

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _tell(self, notice: Any) -> None:
        for listener in list(self._listeners):
            listener(notice)

    async def log_since(self, since: int = 0, limit: int = 500) -> list[LogEntry]:
        data = await self._call(None, self._client.log, since, limit)
        return [LogEntry.model_validate(item) for item in data["records"]]

    async def breach_report(self, query: ReportQuery) -> ReportAnswer:
        data = await self._call(
            None, self._client.breach_report, query.account_id, query.rule, query.at.isoformat()
        )
        return ReportAnswer(report=data.get("report"))

    async def history(self, days: int = 30) -> list[HistoryRow]:
        data = await self._call(None, self._client.history, days)
        return [HistoryRow.model_validate(item) for item in data["days"]]

    # --- admin ----------------------------------------------------------------------------

    async def _call(self, session: Session | None, method: Any, *args: Any, **kw: Any) -> Any:
        """One API call, its refusals as the interface's."""
        self._client.token = None if session is None else session.token
        try:
            return await method(*args, **kw)
        except NotAnswering as exc:
            raise Unavailable(str(exc)) from None
        except ApiError as exc:
            raise _refusal(exc) from None
        finally:
            self._client.token = None

    async def admin_state(self) -> AdminState:
        if self._lost is not None:
            raise Unavailable(f"{self._lost}: the admin screens need the engine")
        state: AdminState = await self._call(None, self._client.admin_state)
        return state

    async def login(self, request: LoginRequest) -> LoginAnswer:
        self._client.token = None
        try:
            await self._client.login(request.password)
        except NotAnswering as exc:
            raise Unavailable(str(exc)) from None
        except ApiError as exc:
            refusal = _refusal(exc)
            if isinstance(refusal, Throttled):
                return LoginAnswer(
                    failures=int(exc.data.get("failures") or 3), locked_until=refusal.until
                )
            if not isinstance(refusal, Unauthorized):
                raise refusal from None
            until = exc.data.get("locked_until")
            return LoginAnswer(
                failures=int(exc.data.get("failures") or 0),
                locked_until=datetime.fromisoformat(until) if isinstance(until, str) else None,
            )
        finally:
            token, self._client.token = self._client.token, None
        if token is None:
            raise Unavailable("the engine answered the login without a session")
        return LoginAnswer(session=Session(token=token))

    async def create_password(self, request: PasswordChange) -> LoginAnswer:
        self._client.token = None
        try:
            await self._client.first_password(request.password)
        except NotAnswering as exc:
            raise Unavailable(str(exc)) from None
        except ApiError as exc:
            raise _refusal(exc) from None
        finally:
            token, self._client.token = self._client.token, None
        if token is None:
            raise Unavailable("the engine answered without a session")
        return LoginAnswer(session=Session(token=token))

    async def logout(self, session: Session) -> None:
        with contextlib.suppress(ControlError):
            await self._call(session, self._client.logout)

    async def change_password(self, session: Session, request: PasswordChange) -> None:
        await self._call(session, self._client.set_password, request.password)

    async def get_rules(self, session: Session) -> RulesState:
        state: RulesState = await self._call(session, self._client.rules)
        return state

    async def put_rules(self, session: Session, request: RulesPut) -> SaveResult:
        result: SaveResult = await self._call(
            session,
            self._client.set_rules,
            request.rules,
            account=request.account,
            drop_own=request.drop_own,
        )
        return result

    async def get_accounts(self, session: Session) -> AccountsState:
        state: AccountsState = await self._call(session, self._client.accounts)
        return state

    async def put_accounts(self, session: Session, request: AccountsPut) -> SaveResult:
        result: SaveResult = await self._call(
            session, self._client.set_accounts, request.ids, guard_all=request.guard_all
        )
        return result

    async def get_schedule(self, session: Session) -> ScheduleState:
        state: ScheduleState = await self._call(session, self._client.schedule)
        return state

    async def put_schedule(self, session: Session, request: SchedulePut) -> SaveResult:
        result: SaveResult = await self._call(session, self._client.set_schedule, request)
        return result

    async def lockouts(self, session: Session) -> list[LockEntry]:
        entries: list[LockEntry] = await self._call(session, self._client.lockouts)
        return entries

    async def clear_lockouts(self, session: Session, request: ClearLocks) -> Cleared:
        if not request.reason.strip():
            raise Invalid([], "Not cleared: a reason is required to clear a lockout.")
        if request.lock is not None:
            ids = [request.lock]
        else:
            ids = [
                lock.id
                for lock in await self.lockouts(session)
                if lock.account_id == request.account
            ]
        # Each is an unlock request that takes effect after admin.unlock_delay (issue 13).
        asked = Cleared()
        for lock_id in ids:
            asked = await self._call(
                session, self._client.clear_lockout, lock_id, request.reason.strip()
            )
        return asked

    async def withdraw_unlock(self, session: Session, request_id: int) -> None:
        await self._call(session, self._client.withdraw_unlock, request_id)

    async def cancel_pending(self, session: Session, request: CancelPending) -> SaveResult:
        result: SaveResult = await self._call(
            session, self._client.cancel_pending, request.key, request.account
        )
        return result

    async def lock_me_out(self, request: LockRequest) -> list[SelfLock]:
        locked: list[SelfLock] = await self._call(
            None, self._client.lock, request.for_, request.account
        )
        return locked

    async def audit(self, session: Session, limit: int = 200) -> list[AuditEntry]:
        records = await self._call(session, self._client.audit, limit)
        return [
            AuditEntry.model_validate(
                {k: v for k, v in item.items() if k in AuditEntry.model_fields}
            )
            for item in records
        ]


# --- helpers ----------------------------------------------------------------------------------


def _refusal(exc: ApiError) -> ControlError:
    if exc.status == 401:
        return Unauthorized(str(exc))
    if exc.status == 429:
        until = exc.data.get("locked_until")
        at = (
            datetime.fromisoformat(until) if isinstance(until, str) else datetime.now().astimezone()
        )
        return Throttled(str(exc), at)
    problems = exc.data.get("problems")
    if exc.status == 409:
        return Conflict(str(exc))
    if exc.status in (400, 404, 422):
        listed = [str(p) for p in problems] if isinstance(problems, list) else []
        # The engine's message is the summary and then each problem ("; "-joined).
        summary = str(exc).removesuffix("".join(f"; {p}" for p in listed))
        return Invalid(listed, summary)
    return Unavailable(f"the engine answered {exc.status}: {exc}")


def _reuse(old: EngineSnapshot | None, new: EngineSnapshot) -> EngineSnapshot:
    """`new` with the objects of `old` wherever they are equal: the screens redo the rows of
    an account (and the log lines) only when its view is a new object, as in-process."""
    if old is None:
        return new
    views: dict[int, AccountView] = {view.account_id: view for view in old.accounts}
    accounts = tuple(
        views[view.account_id] if views.get(view.account_id) == view else view
        for view in new.accounts
    )
    records = {record: record for record in old.log}
    log_records = tuple(records.get(record, record) for record in new.log)
    from dataclasses import replace

    return replace(new, accounts=accounts, log=log_records)

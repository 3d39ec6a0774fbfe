"""The interface implemented on an engine in this process (embedded terminal, demo, and the
headless engine behind its control server).

Everything the screens used to do themselves happens here, on the engine's side: the admin
password and its throttle (`AdminGuard`), writing the configuration file (`config_writer`,
in a thread: file reads and writes never run on the event loop the engine shares; into the
admin overlay beside the database where the engine may not write the config file, as in the
guard), applying it to the engine, and the audit trail.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import types
import typing
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from riskman.admin import FREE_TRIES, MIN_LENGTH, AdminGuard, PasswordError, PasswordStore
from riskman.calendar import HolidayCalendar
from riskman.config import ConfigError, Rules, merge_overlay, read_yaml
from riskman.config_writer import (
    NULL,
    KeyPath,
    admin_target,
    holidays_target,
    to_text,
    update_config,
    update_holidays,
    update_overlay,
)
from riskman.control.interface import (
    CONTRACT_WEIGHTS,
    AccountChoice,
    AccountRules,
    AccountsPut,
    AccountsState,
    AdminState,
    AuditEntry,
    CancelPending,
    CannotStart,
    Cleared,
    ClearLocks,
    ConfigChange,
    Conflict,
    Control,
    ControlError,
    EngineInfo,
    HistoryRow,
    Holiday,
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
    RuleName,
    RulesPut,
    RulesState,
    SaveResult,
    SchedulePut,
    ScheduleState,
    SelfLock,
    Session,
    Unauthorized,
    Unavailable,
)
from riskman.control.interface import (
    notice_of as notice_of,
)
from riskman.core.clock import Clock, SystemClock
from riskman.core.views import EnforcementRecord, EngineChange, EngineSnapshot
from riskman.engine.engine import Engine
from riskman.storage.db import DatabaseError, from_db_time


class EngineSource(Protocol):
    """Where the in-process engine comes from: a connected `Runtime` in production and in the
    demo; tests give an engine built on the FakeGateway through the same small interface."""

    @property
    def where(self) -> str:
        """What is being connected to, for the "connecting…" line."""
        ...

    async def start(self) -> Engine:
        """Connect and return the running engine; raise CannotStart (the runtime's StartError
        is one) with one clear line."""
        ...

    async def stop(self) -> None:
        """Stop everything and flush state; safe to call more than once."""
        ...


class RunningEngine:
    """An engine someone else started and stops (the headless daemon's)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def where(self) -> str:
        return "the running engine"

    async def start(self) -> Engine:
        return self.engine

    async def stop(self) -> None:
        return None


class InProcessControl(Control):
    mode = "embedded"

    def __init__(
        self,
        source: EngineSource,
        config_path: Path,
        *,
        clock: Clock | None = None,
        password_file: Path | None = None,
    ) -> None:
        self.source = source
        self.config_path = config_path
        self.clock: Clock = clock or SystemClock()
        self._password_file = password_file
        self.engine: Engine | None = None
        self.guard: AdminGuard | None = None
        self._info: EngineInfo | None = None
        self._listeners: list[Listener] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._sessions: dict[str, datetime] = {}
        """Token -> when it was last used."""

    @classmethod
    def of_engine(cls, engine: Engine, config_path: Path) -> InProcessControl:
        """The interface on an engine that is already running (started and stopped by its
        owner): call `start()` to take it up."""
        return cls(RunningEngine(engine), config_path, clock=engine.clock)

    # --- life cycle -----------------------------------------------------------------------

    @property
    def where(self) -> str:
        return self.source.where

    @property
    def info(self) -> EngineInfo | None:
        return self._info

    async def start(self) -> None:
        try:
            engine = await self.source.start()
        except CannotStart:
            raise  # the runtime's StartError is one
        except DatabaseError as exc:
            raise CannotStart(str(exc)) from exc
        self.engine = engine
        store = PasswordStore.of(engine.settings)
        if self._password_file is not None:
            store = PasswordStore(self._password_file, store.anchor)
        self.guard = AdminGuard(store, engine.db, self.clock)
        await self.guard.remember_password()
        self._unsubscribe = engine.subscribe(self._on_change)
        self._info = EngineInfo(
            pid=os.getpid(), started=self.clock.now(), config=str(self.config_path)
        )

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._sessions.clear()
        await self.source.stop()

    def _engine(self) -> Engine:
        if self.engine is None:
            raise Unavailable("riskman is not running yet")
        return self.engine

    # --- views ----------------------------------------------------------------------------

    def snapshot(self) -> EngineSnapshot | None:
        return None if self.engine is None else self.engine.snapshot()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _on_change(self, change: EngineChange) -> None:
        # Called synchronously inside the engine: O(1) only.
        notice = notice_of(change)
        for listener in list(self._listeners):
            listener(notice)

    async def log_since(self, since: int = 0, limit: int = 500) -> list[LogEntry]:
        engine = self._engine()
        await engine.db.flush()  # the newest lines may wait in the store's write batch
        rows = await engine.db.fetchall(
            "SELECT id, ts, account_id, rule, action, target, reason, result, detail, latency_ms"
            " FROM enforcement_log WHERE id > ? ORDER BY id LIMIT ?",
            (since, max(1, min(limit, 5000))),
        )
        return [
            LogEntry(
                id=row["id"],
                at=from_db_time(row["ts"]) or self.clock.now(),
                account_id=row["account_id"],
                rule=row["rule"],
                action=row["action"],
                target=row["target"],
                reason=row["reason"],
                result=row["result"],
                detail=row["detail"] or "",
                latency_ms=row["latency_ms"],
            )
            for row in rows
        ]

    async def history(self, days: int = 30) -> list[HistoryRow]:
        from riskman.report import history

        engine = self._engine()
        return [
            HistoryRow(
                day=row.day,
                account_id=row.account_id,
                realized=row.realized,
                trades=row.trades,
                breaches=row.breaches,
                locks=row.locks,
                actions=row.actions,
            )
            for row in await history(engine.db, max(1, min(days, 366)))
        ]

    async def breach_report(self, query: ReportQuery) -> ReportAnswer:
        engine = self._engine()
        record = EnforcementRecord(query.at, query.account_id, query.rule, "", "", "", "")
        report = await engine.reports.load(record)
        return ReportAnswer(report=None if report is None else json.loads(report.to_json()))

    # --- the admin session ----------------------------------------------------------------

    def _guard(self) -> AdminGuard:
        self._engine()
        assert self.guard is not None
        return self.guard

    def _idle_lock(self) -> float:
        return float(self._engine().settings.admin.idle_lock)

    def _check(self, session: Session) -> Engine:
        engine = self._engine()
        now = self.clock.now()
        used = self._sessions.get(session.token)
        if used is None or now - used > timedelta(seconds=self._idle_lock()):
            self._sessions.pop(session.token, None)
            raise Unauthorized("no admin session: log in with the admin password")
        self._sessions[session.token] = now
        return engine

    def _open_session(self) -> Session:
        token = secrets.token_urlsafe(24)
        now = self.clock.now()
        self._sessions[token] = now
        return Session(token=token, expires=now + timedelta(seconds=self._idle_lock()))

    async def admin_state(self) -> AdminState:
        guard = self._guard()
        try:
            stored = await asyncio.to_thread(guard.store.load)
        except PasswordError as exc:
            raise ControlError(str(exc)) from None
        return AdminState(
            password_set=stored is not None,
            locked_until=await guard.locked_until(),
            idle_lock=self._idle_lock(),
            free_tries=FREE_TRIES,
            min_length=MIN_LENGTH,
        )

    async def login(self, request: LoginRequest) -> LoginAnswer:
        guard = self._guard()
        try:
            attempt = await guard.try_password(request.password)
        except PasswordError as exc:
            raise ControlError(str(exc)) from None
        if attempt.ok:
            return LoginAnswer(session=self._open_session())
        if attempt.locked_until is not None and attempt.failures >= FREE_TRIES:
            await self._engine().audit(
                "admin_locked",
                "admin screens",
                old=None,
                new=f"locked until {attempt.locked_until.isoformat()}",
                reason=f"{attempt.failures} wrong passwords in a row",
            )
        return LoginAnswer(failures=attempt.failures, locked_until=attempt.locked_until)

    async def create_password(self, request: PasswordChange) -> LoginAnswer:
        guard = self._guard()
        if await asyncio.to_thread(guard.store.exists):
            raise Conflict("an admin password is already set: log in with it")
        if await asyncio.to_thread(guard.store.existed):
            # Never offer a new password for a deleted hash file (issue 13).
            raise Conflict(guard.store.missing_message())
        try:
            # Create-only: a password set meanwhile (another terminal, the command line) is
            # never replaced.
            await asyncio.to_thread(guard.store.create, request.password)
        except PasswordError as exc:
            if await asyncio.to_thread(guard.store.exists):
                raise Conflict("an admin password is already set: log in with it") from None
            raise Invalid([], f"Not set: {exc}.") from None
        await self._engine().audit(
            "password", "admin password", old=None, new="set", reason="first run"
        )
        return LoginAnswer(session=self._open_session())

    async def logout(self, session: Session) -> None:
        self._sessions.pop(session.token, None)

    async def change_password(self, session: Session, request: PasswordChange) -> None:
        engine = self._check(session)
        try:
            await asyncio.to_thread(self._guard().store.set, request.password)
        except PasswordError as exc:
            raise Invalid([], f"Not changed: {exc}.") from None
        await engine.audit("password", "admin password", old=None, new="changed")

    # --- rules ----------------------------------------------------------------------------

    async def _entries(self, engine: Engine) -> dict[int, tuple[int, Any]]:
        """The `accounts:` the admin edits (the overlay's list when it has one)."""
        overlay = engine.settings.admin_overlay
        return await asyncio.to_thread(file_accounts, self.config_path, overlay)

    async def get_rules(self, session: Session) -> RulesState:
        engine = self._check(session)
        return rules_state(engine, await self._entries(engine))

    async def put_rules(self, session: Session, request: RulesPut) -> SaveResult:
        engine = self._check(session)
        prefix: KeyPath = ("rules",)
        if request.account is not None:
            entries = await self._entries(engine)
            found = entries.get(request.account)
            if found is None:
                raise Invalid(
                    [],
                    f"Not saved: account {request.account} is no longer listed in "
                    f"{self.config_path}.",
                )
            prefix = ("accounts", found[0], "rules")
            if request.drop_own:
                return await self._write(engine, {prefix: None})
        elif request.drop_own:
            raise Invalid([], "Not saved: drop_own needs an account.")
        return await self._write(engine, rule_changes(prefix, request.rules))

    # --- accounts -------------------------------------------------------------------------

    async def get_accounts(self, session: Session) -> AccountsState:
        engine = self._check(session)
        configured = set(engine.desired.account_ids)
        names: dict[int, str] = {}
        problem = ""
        try:
            for account in await engine.gateway.search_accounts(only_active=False):
                names[account.id] = account.name
        except Exception as exc:  # the gateway may be down: the configured ids still show
            problem = f"Could not list the profile's accounts from the gateway: {exc}"
        snapshot = engine.snapshot()
        for view in snapshot.accounts:
            names.setdefault(view.account_id, view.name)
        for account_id in configured:
            names.setdefault(account_id, "(not listed by the gateway)")
        return AccountsState(
            guard_all=not configured,
            accounts=[
                AccountChoice(id=account_id, name=name, guarded=account_id in configured)
                for account_id, name in sorted(names.items())
            ],
            problem=problem,
        )

    async def put_accounts(self, session: Session, request: AccountsPut) -> SaveResult:
        engine = self._check(session)
        if request.guard_all:
            wanted: list[Any] = []
        else:
            if not request.ids:
                raise Invalid(
                    [],
                    "Select at least one account, or switch on “Guard every active account”.",
                )
            # Keep each kept account's own entry (it may carry per-account rules).
            entries = await self._entries(engine)
            wanted = [entries.get(account_id, (0, account_id))[1] for account_id in request.ids]
        return await self._write(engine, {("accounts",): wanted})

    # --- schedule -------------------------------------------------------------------------

    async def get_schedule(self, session: Session) -> ScheduleState:
        engine = self._check(session)
        settings = engine.desired
        calendar = await asyncio.to_thread(HolidayCalendar.load, settings.holidays_file)
        return ScheduleState(
            daily_reset=settings.daily_reset.strftime("%H:%M"),
            timezone=settings.timezone,
            holidays_file=settings.holidays_file.name,
            holidays=[holiday_of(h.day, h.name, h.early_close) for h in calendar],
        )

    async def put_schedule(self, session: Session, request: SchedulePut) -> SaveResult:
        engine = self._check(session)
        settings = engine.settings
        changes: dict[KeyPath, Any] = {}
        if request.daily_reset is not None and request.daily_reset != (
            settings.daily_reset.strftime("%H:%M")
        ):
            changes[("daily_reset",)] = request.daily_reset
        if request.timezone is not None and request.timezone != settings.timezone:
            changes[("timezone",)] = request.timezone
        result = SaveResult()
        if changes:
            result = await self._write(engine, changes)
        if request.holidays is None:
            return result
        wanted = {holiday_key(h) for h in request.holidays}
        path = engine.settings.holidays_file
        before = await asyncio.to_thread(HolidayCalendar.load, path)
        old = {holiday_key(holiday_of(h.day, h.name, h.early_close)) for h in before}
        if old == wanted:
            return result
        closed = [{"date": d, "name": n} for d, n, t in sorted(wanted) if t is None]
        early = [
            {"date": d, "time": time.fromisoformat(t), "name": n}
            for d, n, t in sorted(wanted)
            if t is not None
        ]
        # A holidays file riskman may not write (the guard's, in /etc/riskman) is copied to
        # the database's folder, edited there, and `holidays_file` points at the copy.
        target = await asyncio.to_thread(
            holidays_target, path, engine.settings.admin_overlay.parent
        )
        try:
            await asyncio.to_thread(update_holidays, path, closed, early, into=target)
        except ConfigError as exc:
            raise Invalid(exc.problems, "Holidays not saved (file unchanged)") from None
        except OSError as exc:
            raise Invalid(
                [], f"Holidays not saved: cannot write {target}: {exc.strerror}"
            ) from None
        if target != path:
            moved = await self._write(engine, {("holidays_file",): str(target)})
            result = moved.model_copy(update={"changes": [*result.changes, *moved.changes]})
        engine.reload_calendar()
        added = [holiday_text(h) for h in sorted(wanted - old)]
        removed = [holiday_text(h) for h in sorted(old - wanted)]
        await engine.audit(
            "holidays",
            str(path.name),
            old="; ".join(removed) or "-",
            new="; ".join(added) or "-",
        )
        return result.model_copy(update={"holidays_added": added, "holidays_removed": removed})

    # --- lockouts -------------------------------------------------------------------------

    async def lockouts(self, session: Session) -> list[LockEntry]:
        engine = self._check(session)
        return lock_entries(engine.snapshot(), self.clock.now())

    async def clear_lockouts(self, session: Session, request: ClearLocks) -> Cleared:
        """An unlock is a request: the lock ends after admin.unlock_delay (issue 13)."""
        engine = self._check(session)
        try:
            asked = await engine.request_unlock(
                request.account, request.reason, lock_id=request.lock
            )
        except ValueError as exc:
            raise Invalid([], f"Not asked: {exc}.") from None
        return Cleared(request=asked.id, due=asked.due)

    async def withdraw_unlock(self, session: Session, request_id: int) -> None:
        engine = self._check(session)
        try:
            await engine.withdraw_unlock(request_id)
        except ValueError as exc:
            raise Invalid([], f"Not withdrawn: {exc}.") from None

    async def cancel_pending(self, session: Session, request: CancelPending) -> SaveResult:
        """The value in force goes back into the file: the loosening is no longer asked for."""
        engine = self._check(session)
        change = next(
            (p for p in engine.pending if p.account == request.account and p.key == request.key),
            None,
        )
        if change is None:
            raise Invalid([], f"Nothing is pending for {request.key}.")
        changes: dict[KeyPath, Any]
        if request.key == "accounts":
            if request.account is None:
                changes = {("accounts",): []}
            else:
                entries = await self._entries(engine)
                kept = [raw for _index, raw in sorted(entries.values(), key=lambda e: e[0])]
                changes = {("accounts",): [*kept, request.account]}
        elif request.key == "admin.unlock_delay":
            changes = {("admin", "unlock_delay"): change.old}
        elif request.key in ("daily_reset", "timezone"):
            changes = {(request.key,): change.old}
        else:
            path: KeyPath = tuple(request.key.split("."))
            if request.account is not None:
                entries = await self._entries(engine)
                found = entries.get(request.account)
                if found is None:
                    raise Invalid([], f"Account {request.account} is not in the file.")
                path = ("accounts", found[0], *path)
            changes = {path: change.old}
        result = await self._write(engine, changes)
        target = request.key if request.account is None else f"account {request.account} "
        await engine.audit(
            "cancel_pending",
            target if request.account is None else target + request.key,
            old=repr(change.new),
            new=repr(change.old),
            reason="cancelled by an admin",
        )
        return result

    async def lock_me_out(self, request: LockRequest) -> list[SelfLock]:
        engine = self._engine()
        try:
            locks = await engine.lock_me_out(request.for_, request.account)
        except ValueError as exc:
            raise Invalid([], f"Not locked: {exc}.") from None
        return [SelfLock(account=k.account_id, until=k.until, reason=k.reason) for k in locks]

    # --- audit ----------------------------------------------------------------------------

    async def audit(self, session: Session, limit: int = 200) -> list[AuditEntry]:
        engine = self._check(session)
        rows = await engine.db.fetchall(
            "SELECT id, ts, action, target, old_value, new_value, reason FROM admin_audit "
            "ORDER BY id DESC LIMIT ?",
            (max(1, min(limit, 5000)),),
        )
        return [
            AuditEntry(
                id=row["id"],
                at=from_db_time(row["ts"]),
                action=row["action"],
                target=row["target"],
                old=row["old_value"] or "",
                new=row["new_value"] or "",
                reason=row["reason"] or "",
            )
            for row in rows
        ]

    # --- writing the file -----------------------------------------------------------------

    async def _write(self, engine: Engine, changes: Mapping[KeyPath, Any]) -> SaveResult:
        """Write, apply and audit `changes`; Invalid with the loader's problems when it
        refuses them (the file untouched). Written to the config file, or to the admin
        overlay when riskman may not write the file (`admin_target`)."""
        overlay = engine.settings.admin_overlay
        target = overlay
        try:
            target = await asyncio.to_thread(admin_target, self.config_path, overlay)
            if target == overlay:
                settings, applied = await asyncio.to_thread(
                    update_overlay, self.config_path, overlay, changes
                )
            else:
                settings, applied = await asyncio.to_thread(
                    update_config, self.config_path, changes
                )
        except ConfigError as exc:
            raise Invalid(exc.problems) from None
        except OSError as exc:
            raise Invalid([], f"Not saved: cannot write {target}: {exc.strerror}") from None
        pending = await engine.apply_settings(settings)
        result = []
        for change in applied:
            old, new = audit_text(change.old), audit_text(change.new)
            await engine.audit("config", change.key, old=old, new=new)
            result.append(ConfigChange(key=change.key, old=old, new=new))
        return SaveResult(
            changes=result,
            pending=[change.as_json() for change in pending],
            saved_to=str(target) if applied else "",
        )


# --- helpers (engine side) --------------------------------------------------------------------


def rules_state(engine: Engine, entries: Mapping[int, tuple[int, Any]]) -> RulesState:
    # The admin edits what riskman was asked for (the file); looser parts of it may still be
    # pending until the reset (issue 13): the engine's `pending` says which.
    settings = engine.desired
    names = [CONTRACT_WEIGHTS] + [
        RuleName(key=rule.key, id=rule.id, title=rule.title) for rule in engine.rules
    ]
    accounts = []
    for entry in settings.accounts:
        raw = entries.get(entry.id)
        own = raw[1].get("rules") if raw and isinstance(raw[1], Mapping) else None
        accounts.append(
            AccountRules(
                id=entry.id,
                own=plain(own) if isinstance(own, Mapping) else ({} if entry.rules else None),
                effective=settings.rules_for(entry.id).model_dump(mode="json"),
            )
        )
    return RulesState(rules=settings.rules.model_dump(mode="json"), accounts=accounts, names=names)


def rule_changes(prefix: KeyPath, rules: Mapping[str, Any]) -> dict[KeyPath, Any]:
    """A partial rules object as key path -> value, down to the rules' own fields (a field
    that holds a mapping, like `limits: {ES: 2}`, is replaced whole). A null clears the key:
    removed when its default is None, else written as an explicit null ("no limit")."""
    changes: dict[KeyPath, Any] = {}

    def walk(model: type[BaseModel] | None, data: Mapping[str, Any], path: KeyPath) -> None:
        for key, value in data.items():
            field = model.model_fields.get(key) if model is not None else None
            sub = _bare(field.annotation) if field is not None else None
            if isinstance(sub, type) and issubclass(sub, BaseModel) and isinstance(value, Mapping):
                walk(sub, value, (*path, key))
            elif value is None:
                default = None if field is None else field.get_default(call_default_factory=True)
                changes[(*prefix, *path, key)] = None if default is None else NULL
            else:
                changes[(*prefix, *path, key)] = value

    walk(Rules, rules, ())
    return changes


def _bare(annotation: Any) -> Any:
    """The type inside `Annotated[...]` and `X | None`."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def lock_entries(snapshot: EngineSnapshot, now: datetime) -> list[LockEntry]:
    return [
        LockEntry(
            account_id=view.account_id,
            account=view.name,
            id=lock.id,
            rule=lock.rule,
            kind=lock.kind,
            reason=lock.reason,
            until=lock.until,
            unlock=lock.unlock,
        )
        for view in snapshot.accounts
        for lock in view.locks
        if lock.until is None or lock.until > now
    ]


def holiday_of(day: date, name: str, close: time | None) -> Holiday:
    return Holiday(day=day, name=name, close=None if close is None else close.strftime("%H:%M"))


def holiday_key(holiday: Holiday) -> tuple[date, str, str | None]:
    return (holiday.day, holiday.name, holiday.close)


def holiday_text(holiday: tuple[date, str, str | None]) -> str:
    day, name, close = holiday
    return f"{day} {name}" + (f" (closes {close})" if close else " (closed)")


def file_accounts(path: Path, overlay: Path | None = None) -> dict[int, tuple[int, Any]]:
    """The `accounts:` the admin edits, as written: id -> (index in the list, raw entry), a
    bare id or a mapping with its own `rules`. The admin overlay's list when it has one (it
    replaces the file's whole), else the file's. Empty when the file no longer reads (a save
    says why). Reads files: call it in a thread."""
    try:
        data = read_yaml(path)
        if overlay is not None and overlay.exists():
            data = merge_overlay(data, read_yaml(overlay))
        raw = data.get("accounts") or []
    except Exception:
        return {}
    entries: dict[int, tuple[int, Any]] = {}
    for index, entry in enumerate(raw):
        entry_id: Any = entry.get("id") if isinstance(entry, Mapping) else entry
        try:
            entries[int(entry_id)] = (index, entry)
        except (TypeError, ValueError):
            continue
    return entries


def plain(value: Any) -> Any:
    """A value read from the YAML file as plain data (ruamel's types -> dict, list, scalars)."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float | Decimal):
        return float(value)
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


def audit_text(value: Any) -> str:
    return "(not set)" if value is None else to_text(plain(value))

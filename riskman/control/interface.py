"""The one interface between riskman's screens and its engine: views and commands.

Two implementations: `InProcessControl` (the engine runs in this process: the embedded
terminal, `riskman demo`, and the headless engine's control server) and `AttachedControl`
(a terminal attached to a running engine over its Unix socket). The screens depend on this
module only; they never touch the engine, its database or the gateway.

Every command is a plain async method whose inputs and outputs are pydantic models (they
serialize to JSON as they are): the control server exposes exactly these over HTTP. Admin
commands take the `Session` that `login` handed out; without a valid one they raise
`Unauthorized`. Refusals are exceptions (`Invalid` with the problems, `Unauthorized`,
`Throttled`, `Unavailable`); a wrong password is an answer (`LoginAnswer` without a session).

The live views (`EngineSnapshot` and what it holds) are the engine's immutable dataclasses;
`riskman.control.wire` turns them into JSON and back, for the stream.

Adding a command: a method on `Control` (raising `Unavailable` by default, so an older
implementation refuses it in one clear line), its request/answer models here, the in-process
implementation, the server's route and the attached client's call.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from riskman.core.views import EnforcementRecord, EngineSnapshot, LimitWarning, LockoutChange

# --- refusals ---------------------------------------------------------------------------------


class ControlError(Exception):
    """A command refused, with one line for the user."""

    status = 400


class CannotStart(ControlError):
    """The engine cannot start (bad config, credentials, gateway, database): one line."""

    status = 503


class Unauthorized(ControlError):
    """No valid admin session (never logged in, expired, or logged out)."""

    status = 401


class Conflict(ControlError):
    """Not possible in the engine's state (a first admin password when one is set)."""

    status = 409


class Throttled(ControlError):
    """Too many wrong passwords: no login before `until`."""

    status = 429

    def __init__(self, message: str, until: datetime) -> None:
        super().__init__(message)
        self.until = until


class Invalid(ControlError):
    """The request would make an invalid configuration (or is malformed): nothing changed."""

    status = 422

    def __init__(
        self, problems: list[str], summary: str = "Not saved (the file is unchanged)"
    ) -> None:
        super().__init__(summary + "".join(f"; {problem}" for problem in problems))
        self.summary = summary
        self.problems = problems

    def text(self) -> str:
        """The summary and each problem on a line of its own (for a screen)."""
        if not self.problems:
            return self.summary
        return f"{self.summary}:\n" + "\n".join(self.problems)


class Unavailable(ControlError):
    """The engine is not running, not reachable, or does not know this command."""

    status = 503


# --- models -----------------------------------------------------------------------------------


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EngineInfo(Model):
    """Which engine this is: for the top line ("attached to riskman (pid N, up 3h)")."""

    pid: int
    started: datetime
    config: str
    """The engine's configuration file."""


class AdminState(Model):
    """Before a login: is a password set, and is login throttled."""

    password_set: bool
    locked_until: datetime | None = None
    failures: int = 0
    idle_lock: float = 300.0
    """Seconds without input after which the admin screens lock again."""
    free_tries: int = 3
    """Wrong passwords in a row before logins are refused for a growing delay."""
    min_length: int = 8
    """The shortest admin password."""


class Session(Model):
    token: str = Field(repr=False)
    expires: datetime | None = None


class LoginRequest(Model):
    password: str = Field(repr=False)


class LoginAnswer(Model):
    """`session` set: logged in. Otherwise how many wrong passwords in a row, and until when
    logins are refused (set once throttled)."""

    session: Session | None = None
    failures: int = 0
    locked_until: datetime | None = None


class PasswordChange(Model):
    password: str = Field(repr=False)


class ConfigChange(Model):
    """One changed key of the configuration file, as the audit records it."""

    key: str
    old: str
    new: str


class SaveResult(Model):
    changes: list[ConfigChange] = []
    """What changed in the configuration file (empty: the values were already so)."""
    holidays_added: list[str] = []
    holidays_removed: list[str] = []
    pending: list[dict[str, Any]] = []
    """Looser changes that wait for the daily reset (issue 13), as `GET /v1/status` lists them."""
    saved_to: str = ""
    """The file written: the config file, or the admin overlay (`riskman.admin.yaml` beside
    the database) where riskman may not write the config file (the guard)."""


class RuleName(Model):
    key: str
    id: str
    title: str


CONTRACT_WEIGHTS = RuleName(
    key="contract_weights", id="RULE-015", title="Contract weights (option of 001/002)"
)
"""An option of RULE-001/002 with its own key: no rule of its own runs it."""


class AccountRules(Model):
    id: int
    own: dict[str, Any] | None = None
    """The values this account sets itself (`accounts: [{id, rules}]` in the file); None:
    it runs the global rules."""
    effective: dict[str, Any]
    """The rules it runs (the global rules with its own values over them)."""


class RulesState(Model):
    rules: dict[str, Any]
    """The global `rules:` (every rule, JSON)."""
    accounts: list[AccountRules] = []
    """The accounts listed in the file (`accounts:`), with their rules."""
    names: list[RuleName] = []
    """The rules the engine runs."""


class RulesPut(Model):
    """A partial rules object (`{"daily_realized_loss": {"limit": 250}}`), for every account
    or, with `account`, for that account's own rules. A null clears a value (an optional key
    goes back to its default, or is written as "no limit"). `drop_own` with `account` removes
    the account's own rules (it runs the global ones again)."""

    rules: dict[str, Any] = {}
    account: int | None = None
    drop_own: bool = False


class AccountChoice(Model):
    id: int
    name: str
    guarded: bool
    """Listed in the file (`accounts:`)."""


class AccountsState(Model):
    guard_all: bool
    """`accounts: []`: every active account of the profile is guarded."""
    accounts: list[AccountChoice] = []
    problem: str = ""
    """Why the profile's accounts could not all be listed (the gateway down)."""


class AccountsPut(Model):
    guard_all: bool = False
    ids: list[int] = []


class Holiday(Model):
    day: date
    name: str
    close: str | None = None
    """An early close ("HH:MM"); None: closed all day."""


class ScheduleState(Model):
    daily_reset: str
    """"HH:MM"."""
    timezone: str
    holidays_file: str
    holidays: list[Holiday] = []


class SchedulePut(Model):
    daily_reset: str | None = None
    timezone: str | None = None
    holidays: list[Holiday] | None = None
    """The whole list (None: unchanged)."""


class LockEntry(Model):
    account_id: int
    account: str
    id: int
    rule: str
    kind: str
    reason: str
    until: datetime | None = None
    unlock: str


class ClearLocks(Model):
    account: int
    lock: int | None = None
    """One lock; None: every lock of the account."""
    reason: str


class Cleared(Model):
    """An unlock request (issue 13): the lock ends at `due`, not now."""

    cleared: list[int] = []
    request: int | None = None
    due: datetime | None = None


class CancelPending(Model):
    """Give up a pending loosening (issue 13): the value in force is written back to the file."""

    account: int | None = None
    key: str


class LockRequest(Model):
    """Lock me out: no password (it is stricter)."""

    for_: str = Field(alias="for", min_length=1, max_length=40)
    """15m, 30m, 1h (any duration), session, reset, or a local time HH:MM."""
    account: int | None = None
    """None: every guarded account."""


class SelfLock(Model):
    account: int
    until: datetime | None = None
    reason: str


class AuditEntry(Model):
    id: int
    at: datetime | None
    action: str
    target: str
    old: str = ""
    new: str = ""
    reason: str = ""


class LogEntry(Model):
    id: int
    at: datetime
    account_id: int
    rule: str
    action: str
    target: str
    reason: str
    result: str
    detail: str = ""
    latency_ms: float | None = None


class HistoryRow(Model):
    """One account's finished trading day (stored at the daily reset)."""

    day: date
    account_id: int
    realized: Decimal
    trades: int
    breaches: int
    locks: int
    actions: int


class ReportQuery(Model):
    """Which enforcement-log entry's breach report."""

    account_id: int
    rule: str
    at: datetime


class ReportAnswer(Model):
    report: dict[str, Any] | None = None
    """The breach report as JSON (`riskman.engine.reports.BreachReport.to_json`); None when
    none was kept for that entry."""


class HubStatus(Model):
    hub: str
    state: str
    last_event_age: float | None = None
    reconnects: int = 0
    detail: str = ""


class LockStatus(Model):
    rule: str
    kind: str
    reason: str
    until: datetime | None = None
    unlock: str


class AccountStatus(Model):
    id: int
    name: str
    status: Literal["OK", "COOLDOWN", "LOCKED", "NOT GUARDED"]
    realized: Decimal
    open: Decimal
    total: Decimal
    locks: list[LockStatus] = []
    trades: dict[str, int] = {}


class Status(Model):
    """`GET /v1/status`: one look for scripts and monitoring."""

    armed: bool
    pid: int
    started: datetime
    hubs: list[HubStatus] = []
    accounts: list[AccountStatus] = []
    pending: list[dict[str, Any]] = []
    """Rule changes waiting for the reset (always a list)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Notice:
    """Something the trader should see at once (a toast): a new lock, a failed action."""

    title: str
    text: str
    timeout: float = 8.0
    severity: Literal["information", "warning", "error"] = "error"
    bell: bool = False


def notice_of(change: object) -> Notice | None:
    """A new lock, a failed action or a limit warning as a toast; None for the rest."""
    if isinstance(change, LimitWarning):
        return Notice(
            f"Warning · account {change.account_id} · {change.threshold}%",
            change.text,
            10.0,
            "warning",
            bell=True,
        )
    if isinstance(change, LockoutChange) and change.cleared_by is None:
        lock = change.lockout
        kind = "COOLDOWN" if lock.kind.value == "cooldown" else "LOCKED"
        return Notice(f"{kind} · account {lock.account_id} · {lock.rule}", lock.reason, 8.0)
    if isinstance(change, EnforcementRecord) and not change.ok:
        return Notice(
            f"Enforcement problem · account {change.account_id} · {change.rule}",
            f"{change.action} {change.target}: {change.result} {change.detail}".strip(),
            12.0,
        )
    return None


Listener = Callable[[Notice | None], None]
"""Told that the engine's state changed (None), or of a notice. Called synchronously inside
the engine in-process: O(1) only."""


# --- the interface ----------------------------------------------------------------------------


class Control:
    """What the screens (and the control server) may do with riskman. See the module doc."""

    mode: Literal["embedded", "attached"] = "embedded"

    @property
    def where(self) -> str:
        """What is being connected to, for the "connecting…" line."""
        raise NotImplementedError

    @property
    def info(self) -> EngineInfo | None:
        """The engine's pid and start time, once started."""
        return None

    @property
    def lost(self) -> str | None:
        """Why the engine is not watching right now (attached: it stopped answering); None
        while it is."""
        return None

    async def start(self) -> None:
        """Start the engine or attach to it; raise ControlError (StartError in-process)
        with one clear line."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop the engine (in-process) or detach; safe to call more than once."""
        raise NotImplementedError

    # --- views ----------------------------------------------------------------------------

    def snapshot(self) -> EngineSnapshot | None:
        """The engine's state now (in-process) or as last streamed (attached)."""
        raise NotImplementedError

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` on every change; returns the unsubscribe function."""
        raise NotImplementedError

    async def snapshots(
        self, every: float = 0.2, force: float = 1.0
    ) -> AsyncIterator[EngineSnapshot]:
        """A stream of snapshots: at most one per `every` seconds while things change, and at
        least one per `force` seconds (the WebSocket stream)."""
        changed = asyncio.Event()
        unsubscribe = self.subscribe(lambda _: changed.set())
        loop = asyncio.get_running_loop()
        try:
            while True:
                began = loop.time()
                snapshot = self.snapshot()
                if snapshot is not None:
                    yield snapshot
                changed.clear()
                await asyncio.sleep(max(0.0, every - (loop.time() - began)))
                try:
                    async with asyncio.timeout(max(0.0, force - every)):
                        await changed.wait()
                except TimeoutError:
                    pass
        finally:
            unsubscribe()

    async def status(self) -> Status:
        snapshot = self.snapshot()
        info = self.info
        if snapshot is None or info is None:
            raise Unavailable("riskman is not running yet")
        return status_of(snapshot, info)

    async def log_since(self, since: int = 0, limit: int = 500) -> list[LogEntry]:
        """Enforcement log records with an id above `since`, oldest first."""
        raise Unavailable("the enforcement log is not available")

    async def breach_report(self, query: ReportQuery) -> ReportAnswer:
        """The breach report an enforcement-log entry belongs to."""
        raise Unavailable("breach reports are not available here")

    async def history(self, days: int = 30) -> list[HistoryRow]:
        """The last `days` finished trading days, newest first, one row per account."""
        raise Unavailable("the history is not available here")

    # --- admin ----------------------------------------------------------------------------

    async def admin_state(self) -> AdminState:
        raise NotImplementedError

    async def login(self, request: LoginRequest) -> LoginAnswer:
        raise NotImplementedError

    async def create_password(self, request: PasswordChange) -> LoginAnswer:
        """The first password (only while none is set): logs in with it."""
        raise NotImplementedError

    async def logout(self, session: Session) -> None:
        raise NotImplementedError

    async def change_password(self, session: Session, request: PasswordChange) -> None:
        raise NotImplementedError

    async def get_rules(self, session: Session) -> RulesState:
        raise NotImplementedError

    async def put_rules(self, session: Session, request: RulesPut) -> SaveResult:
        raise NotImplementedError

    async def get_accounts(self, session: Session) -> AccountsState:
        raise NotImplementedError

    async def put_accounts(self, session: Session, request: AccountsPut) -> SaveResult:
        raise NotImplementedError

    async def get_schedule(self, session: Session) -> ScheduleState:
        raise NotImplementedError

    async def put_schedule(self, session: Session, request: SchedulePut) -> SaveResult:
        raise NotImplementedError

    async def lockouts(self, session: Session) -> list[LockEntry]:
        raise NotImplementedError

    async def clear_lockouts(self, session: Session, request: ClearLocks) -> Cleared:
        raise NotImplementedError

    async def cancel_pending(self, session: Session, request: CancelPending) -> SaveResult:
        """An admin cancels a pending loosening (never hurries one)."""
        raise NotImplementedError

    async def withdraw_unlock(self, session: Session, request_id: int) -> None:
        """An admin withdraws an unlock he asked for."""
        raise NotImplementedError

    async def lock_me_out(self, request: LockRequest) -> list[SelfLock]:
        """The trader locks himself out (no session: it only makes riskman stricter)."""
        raise NotImplementedError

    async def audit(self, session: Session, limit: int = 200) -> list[AuditEntry]:
        raise NotImplementedError


# --- views as JSON ----------------------------------------------------------------------------


def status_of(snapshot: EngineSnapshot, info: EngineInfo) -> Status:
    hubs = [
        HubStatus(
            hub=feed.hub,
            state=feed.state.value,
            last_event_age=feed.last_event_age,
            reconnects=feed.reconnects,
            detail=feed.detail,
        )
        for feed in (snapshot.user_feed, snapshot.market_feed)
        if feed is not None
    ]
    accounts = [
        AccountStatus(
            id=view.account_id,
            name=view.name,
            status=(
                "NOT GUARDED"
                if not (snapshot.armed and view.guarded)
                else _status_word(view.status)
            ),
            realized=view.realized,
            open=view.open_pnl,
            total=view.total,
            locks=[
                LockStatus(
                    rule=lock.rule,
                    kind=lock.kind,
                    reason=lock.reason,
                    until=lock.until,
                    unlock=lock.unlock,
                )
                for lock in view.locks
            ],
            trades={
                "minute": view.counts.minute,
                "hour": view.counts.hour,
                "session": view.counts.session,
            },
        )
        for view in snapshot.accounts
    ]
    return Status(
        armed=snapshot.armed,
        pid=info.pid,
        started=info.started,
        hubs=hubs,
        accounts=accounts,
        pending=[change.as_json() for change in snapshot.pending],
    )


def _status_word(status: str) -> Literal["OK", "COOLDOWN", "LOCKED"]:
    if status == "LOCKED":
        return "LOCKED"
    if status == "COOLDOWN":
        return "COOLDOWN"
    return "OK"

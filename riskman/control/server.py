"""The control API: HTTP + JSON (and a WebSocket stream) on a Unix socket, served by uvicorn
inside the engine's own event loop.

Read-only for any local process that can open the socket (mode 0660, `control.group`);
admin verbs need a session from `POST /v1/admin/login`. The admin verbs are the screens' own
commands (`riskman.control.interface`, done by `InProcessControl` on this engine), with the
same password throttle; every admin change is audited with the caller's uid (SO_PEERCRED).
A bad request gets a 4xx JSON answer; nothing a client sends can stop the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import grp
import json
import logging
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn.protocols.http.h11_impl import H11Protocol

from riskman.config import Settings
from riskman.control import wire
from riskman.control.interface import (
    AccountsPut,
    CancelPending,
    ClearLocks,
    Conflict,
    ControlError,
    Invalid,
    LockRequest,
    LoginRequest,
    Notice,
    PasswordChange,
    RulesPut,
    SchedulePut,
    Session,
    Throttled,
    Unauthorized,
    Unavailable,
)
from riskman.core.views import (
    BURST_SETTLE,
    Breach,
    EnforcementRecord,
    EngineChange,
    LimitWarning,
    LockoutChange,
    ResetDone,
)
from riskman.engine.engine import AUDIT_CALLER, Engine

if TYPE_CHECKING:
    from riskman.control.inprocess import InProcessControl

log = logging.getLogger("riskman.control")

SOCKET_MODE = 0o660
STREAM_EVERY = 0.2
"""Seconds between stream frames while the engine reports changes (5 per second at most)."""
STREAM_FORCE = 1.0
"""A frame at least this often even without a change (ages and countdowns move)."""
LOG_LIMIT = 500
AUDIT_LIMIT = 500
_UCRED = struct.Struct("3i")


# --- the socket ------------------------------------------------------------------------------


class SocketInUse(Exception):
    """Another process answers on the configured socket."""


def bind_socket(path: Path, group: str | None) -> socket.socket:
    """Bind the listening socket at `path` (mode 0660, `group`), replacing a stale file left
    by a killed engine. Refuses a socket that another process still answers on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(str(path))
        except OSError:
            path.unlink()  # nobody answers: the file of an engine that died
        else:
            raise SocketInUse(f"another process answers on the control socket {path}")
        finally:
            probe.close()
    gid = -1
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ValueError(f"control.group: no group named {group!r}") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Bind under a private umask, then open it up to exactly 0660: no moment where
        # others could connect.
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        if gid != -1:
            os.chown(path, -1, gid)
        os.chmod(path, SOCKET_MODE)
        sock.listen(64)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return sock


def peer_uid(sock: socket.socket | None) -> int | None:
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        _pid, uid, _gid = _UCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        )
    except OSError:
        return None
    return int(uid)


class PeerCredProtocol(H11Protocol):
    """uvicorn's HTTP protocol, with the peer's uid as the request's client: a Unix socket
    has no address, and the audit wants to know who called (`request.client` = ("uid", N))."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        uid = peer_uid(transport.get_extra_info("socket"))
        if uid is not None:
            self.client = ("uid", uid)


def caller_uid(request: Request) -> int | None:
    client = request.client
    if client is not None and client.host == "uid":
        return client.port
    return None


# --- request bodies and sessions ---------------------------------------------------------


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClearBody(Body):
    reason: str = Field(max_length=500)


SESSION_MAX = 3600.0
"""However busy, an admin session opened over the socket ends an hour after its login."""


class Issued:
    """The admin tokens this server handed out, with when: the engine's commands keep each
    session alive while it is used (`admin.idle_lock`); this caps its whole life."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._now = monotonic
        self._at: dict[str, float] = {}

    def add(self, token: str) -> None:
        self._at[token] = self._now()

    def expired(self, token: str) -> bool:
        at = self._at.get(token)
        return at is not None and self._now() - at >= SESSION_MAX

    def discard(self, token: str) -> None:
        self._at.pop(token, None)

    def others(self, token: str) -> list[str]:
        return [t for t in self._at if t != token]


# --- the stream --------------------------------------------------------------------------------

_CHANGE_KINDS: dict[type[Any], str] = {
    EnforcementRecord: "enforcement",
    LockoutChange: "lockout",
    ResetDone: "reset",
    Breach: "breach",
    LimitWarning: "warning",
}


@dataclasses.dataclass(frozen=True, slots=True)
class _Frame:
    """One tick's state, shared by every client; each client's message adds its own part."""

    seq: int
    snapshot: bytes
    """The snapshot as JSON, without its log (sent to each client as a delta)."""
    log: tuple[EnforcementRecord, ...]
    """The engine's log, newest first."""
    changes: tuple[bytes, ...]
    notices: tuple[bytes, ...]


class Stream:
    """One snapshot per tick for every connected client, built once and shared. A slow client
    skips frames (it always gets the newest, and the news of the frames it skipped), so it
    never holds the engine back. The enforcement log (up to 500 lines) goes whole in a
    client's first message and as the new lines after that."""

    def __init__(self, engine: Engine, notice_of: Callable[[EngineChange], Notice | None]) -> None:
        self._engine = engine
        self._notice_of = notice_of
        self._clients: set[_StreamClient] = set()
        self._dirty = True
        self._changes: list[EngineChange] = []
        self._changed_at = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._seq = 0

    def _on_change(self, change: EngineChange) -> None:
        # Called inside the engine: O(1) only.
        self._dirty = True
        self._changed_at = time.monotonic()
        if type(change) in _CHANGE_KINDS or self._notice_of(change) is not None:
            self._changes.append(change)

    def add(self, client: _StreamClient) -> None:
        self._clients.add(client)
        self._dirty = True
        if self._task is None:
            self._unsubscribe = self._engine.subscribe(self._on_change)
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="riskman-control-stream"
            )

    def remove(self, client: _StreamClient) -> None:
        self._clients.discard(client)
        if not self._clients:
            self._stop()

    def close(self) -> None:
        for client in list(self._clients):
            client.close()
        self._clients.clear()
        self._stop()

    def _stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._changes.clear()

    async def _run(self) -> None:
        sent = -1e9
        postponed = False
        while True:
            now = time.monotonic()
            if self._dirty or now - sent >= STREAM_FORCE:
                quiet_for = now - self._changed_at
                if quiet_for < BURST_SETTLE and not postponed:
                    # Events are arriving: the frame waits until they have settled (once).
                    postponed = True
                    await asyncio.sleep(BURST_SETTLE - quiet_for)
                    continue
                postponed = False
                self._dirty = False
                sent = now
                try:
                    frame = self._frame()
                except Exception:
                    log.exception("stream frame failed")
                else:
                    for client in list(self._clients):
                        client.offer(frame)
            await asyncio.sleep(STREAM_EVERY)

    def _frame(self) -> _Frame:
        self._seq += 1
        changes, self._changes = self._changes, []
        snapshot = self._engine.snapshot()
        kinds = [(_CHANGE_KINDS.get(type(c)), c) for c in changes]
        notices = [n for n in map(self._notice_of, changes) if n is not None]
        return _Frame(
            seq=self._seq,
            snapshot=wire.snapshot_to_json(dataclasses.replace(snapshot, log=())),
            log=snapshot.log,
            changes=tuple(wire.change_to_json(kind, c) for kind, c in kinds if kind is not None),
            notices=tuple(json.dumps(dataclasses.asdict(n)).encode() for n in notices),
        )


class _StreamClient:
    def __init__(self) -> None:
        self.latest: _Frame | None = None
        self.changes: list[bytes] = []
        self.notices: list[bytes] = []
        self.newest: EnforcementRecord | None = None
        """The newest log line this client was sent (None: send the whole log)."""
        self.ready = asyncio.Event()
        self.closed = False

    def offer(self, frame: _Frame) -> None:
        self.latest = frame
        self.changes.extend(frame.changes)
        self.notices.extend(frame.notices)
        self.ready.set()

    def close(self) -> None:
        self.closed = True
        self.ready.set()

    async def next(self) -> bytes | None:
        """The message to send now: the newest frame, with what this client has not had."""
        await self.ready.wait()
        self.ready.clear()
        frame, self.latest = self.latest, None
        if self.closed or frame is None:
            return None
        new: list[EnforcementRecord] = []
        full = True
        for record in frame.log:
            if record is self.newest:
                full = False
                break
            new.append(record)
        if frame.log:
            self.newest = frame.log[0]
        changes, self.changes = self.changes, []
        notices, self.notices = self.notices, []
        return (
            b'{"type":"snapshot","seq":%d,"changes":[%s],"notices":[%s],"log":%s,'
            b'"log_full":%s,"snapshot":%s}'
            % (
                frame.seq,
                b",".join(changes),
                b",".join(notices),
                wire.LOG.dump_json(new),
                b"true" if full else b"false",
                frame.snapshot,
            )
        )


# --- the application ---------------------------------------------------------------------------


Handler = Callable[[Request], Awaitable[Response]]
AdminHandler = Callable[[Request, Session], Awaitable[Response]]


class ControlServer:
    """The control API of one engine. `start()` binds the socket and serves; `stop()` closes
    every connection and removes the socket file."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        socket_path: Path,
        *,
        phase: Callable[[], str] = lambda: "running",
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.path = socket_path
        self.phase = phase
        self.control: InProcessControl | None = None
        self.issued = Issued(time.monotonic)
        self.stream: Stream | None = None
        self._server: uvicorn.Server | None = None
        self._sock: socket.socket | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self.app = self._build_app()

    async def start(self) -> None:
        # Imported here: the in-process commands sit above the runtime, which starts us.
        from riskman.control.inprocess import InProcessControl, notice_of

        config = type(self.settings).config_path or self.settings.database.parent / "riskman.yaml"
        control = InProcessControl.of_engine(self.engine, config)
        await control.start()
        self.control = control
        self.stream = Stream(self.engine, notice_of)
        self._sock = bind_socket(self.path, self.settings.control.group)
        uv_config = uvicorn.Config(
            self.app,
            http=PeerCredProtocol,
            ws="websockets-sansio",
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
            ws_ping_interval=None,
        )
        uv_config.load()
        # uvicorn's start/stop chatter ("Waiting for connections to close") is not riskman's
        # news; its warnings and errors still reach the log.
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        server = uvicorn.Server(uv_config)
        server.lifespan = uv_config.lifespan_class(uv_config)
        try:
            await server.startup(sockets=[self._sock])
        except BaseException:
            self._sock.close()
            with contextlib.suppress(OSError):
                self.path.unlink()
            raise
        self._server = server
        # uvicorn's own tick (date header, exit flag); its signal handling is not used: the
        # headless daemon and the terminal own SIGINT/SIGTERM.
        self._loop_task = asyncio.get_running_loop().create_task(
            server.main_loop(), name="riskman-control"
        )
        log.info("control API on %s", self.path)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if self.stream is not None:
            self.stream.close()
        if self.control is not None:
            await self.control.stop()  # ends the sessions; the engine is its owner's to stop
        if server is not None:
            server.should_exit = True
            server.force_exit = True
            if self._loop_task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(self._loop_task, 2.0)
                self._loop_task = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.shutdown(sockets=None), 3.0)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            with contextlib.suppress(OSError):
                self.path.unlink()

    def _control(self) -> InProcessControl:
        if self.control is None:
            raise HTTPException(503, "riskman is not running yet")
        return self.control

    # --- routes ------------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        def admin(handler: AdminHandler) -> Handler:
            async def guarded(request: Request) -> Response:
                session = await self._session(request)
                with _as_caller(caller_uid(request)):
                    return await handler(request, session)

            return guarded

        routes = [
            Route("/v1/status", self.get_status, methods=["GET"]),
            Route("/v1/log", self.get_log, methods=["GET"]),
            Route("/v1/snapshot", self.get_snapshot, methods=["GET"]),
            Route("/v1/report", self.get_report, methods=["GET"]),
            Route("/v1/report/breach", self.get_breach, methods=["GET"]),
            Route("/v1/history", self.get_history, methods=["GET"]),
            Route("/v1/lock", self.post_lock, methods=["POST"]),
            WebSocketRoute("/v1/stream", self.stream_ws),
            Route("/v1/admin/state", self.admin_state, methods=["GET"]),
            Route("/v1/admin/login", self.login, methods=["POST"]),
            Route("/v1/admin/first-password", self.first_password, methods=["POST"]),
            Route("/v1/admin/logout", admin(self.logout), methods=["POST"]),
            Route("/v1/admin/audit", admin(self.get_audit), methods=["GET"]),
            Route("/v1/admin/rules", admin(self.get_rules), methods=["GET"]),
            Route("/v1/admin/rules", admin(self.put_rules), methods=["PUT"]),
            Route("/v1/admin/accounts", admin(self.get_accounts), methods=["GET"]),
            Route("/v1/admin/accounts", admin(self.put_accounts), methods=["PUT"]),
            Route("/v1/admin/lockouts", admin(self.get_lockouts), methods=["GET"]),
            Route(
                "/v1/admin/unlocks/{request_id:int}/withdraw",
                admin(self.withdraw_unlock),
                methods=["POST"],
            ),
            Route("/v1/admin/pending/cancel", admin(self.cancel_pending), methods=["POST"]),
            Route(
                "/v1/admin/lockouts/{lock_id:int}/clear",
                admin(self.clear_lockout),
                methods=["POST"],
            ),
            Route("/v1/admin/schedule", admin(self.get_schedule), methods=["GET"]),
            Route("/v1/admin/schedule", admin(self.put_schedule), methods=["PUT"]),
            Route("/v1/admin/password", admin(self.post_password), methods=["POST"]),
        ]
        return Starlette(
            routes=routes,
            exception_handlers={
                HTTPException: _http_error,
                ValidationError: _validation_error,
                ControlError: _control_error,
                Exception: _internal_error,
            },
        )

    async def get_status(self, request: Request) -> Response:
        status = await self._control().status()
        engine = self.engine
        data = status.model_dump(mode="json")
        # What the interface's summary does not say: why it is not armed yet, and which
        # accounts riskman was told not to guard.
        data["phase"] = self.phase()
        for account in data["accounts"]:
            if not engine.is_guarded(account["id"]):
                account["status"] = wire.NOT_GUARDED
        listed = {account["id"] for account in data["accounts"]}
        for known in engine.state.accounts():
            if known.id not in listed and not engine.is_guarded(known.id):
                data["accounts"].append(
                    {"id": known.id, "name": known.name, "status": wire.NOT_GUARDED}
                )
        return JSONResponse(data)

    async def get_snapshot(self, request: Request) -> Response:
        snapshot = wire.snapshot_to_json(self.engine.snapshot())
        return Response(snapshot, media_type="application/json")

    async def get_report(self, request: Request) -> Response:
        """A trading day's summary and breach reports (`?day=YYYY-MM-DD`, default today)."""
        from datetime import date

        from riskman.calendar import ResetSchedule
        from riskman.report import day_report

        engine = self.engine
        text = request.query_params.get("day")
        try:
            day = engine.resets.trading_day() if text is None else date.fromisoformat(text)
        except ValueError:
            raise HTTPException(400, f"day {text!r} is not a date YYYY-MM-DD") from None
        await engine.db.flush()
        schedule = ResetSchedule(engine.settings.daily_reset, engine.settings.zone)
        report = await day_report(engine.db, schedule, day)
        pending = [r for r in engine.reports.open_reports() if r.trading_day == day]
        data = report.as_json()
        data["open"] = [json.loads(r.to_json()) for r in pending]
        return JSONResponse(data)

    async def get_history(self, request: Request) -> Response:
        """The last `?days=N` (default 30) finished trading days, one row per account."""
        from riskman.report import history

        days = max(1, min(366, _int_param(request, "days", 30) or 30))
        rows = await history(self.engine.db, days)
        return JSONResponse(
            {
                "days": [
                    {
                        "day": row.day.isoformat(),
                        "account_id": row.account_id,
                        "realized": str(row.realized),
                        "trades": row.trades,
                        "breaches": row.breaches,
                        "locks": row.locks,
                        "actions": row.actions,
                    }
                    for row in rows
                ]
            }
        )

    async def get_breach(self, request: Request) -> Response:
        """The breach report of one log entry: `?account=ID&rule=RULE-003&at=ISO-TIME`."""
        params = request.query_params
        try:
            account = int(params["account"])
            at = datetime.fromisoformat(params["at"])
            rule = params["rule"]
        except (KeyError, ValueError):
            raise HTTPException(400, "give account, rule and at (ISO time)") from None
        if at.tzinfo is None:
            raise HTTPException(400, "at needs a timezone") from None
        record = EnforcementRecord(at, account, rule, "", "", "", "")
        report = await self.engine.reports.load(record)
        return JSONResponse({"report": None if report is None else json.loads(report.to_json())})

    async def get_log(self, request: Request) -> Response:
        since = _int_param(request, "since", None)
        limit = min(LOG_LIMIT, max(1, _int_param(request, "limit", LOG_LIMIT) or LOG_LIMIT))
        # The log's newest lines may still wait in the store's write batch (deferred writes).
        await self.engine.db.flush()
        if since is None:
            # The newest `limit` lines: start just below them.
            row = await self.engine.db.fetchone(
                "SELECT MIN(id) AS first FROM (SELECT id FROM enforcement_log "
                "ORDER BY id DESC LIMIT ?)",
                (limit,),
            )
            first = row["first"] if row is not None else None
            since = 0 if first is None else int(first) - 1
        records = await self._control().log_since(since, limit)
        return JSONResponse(
            {
                "records": [record.model_dump(mode="json") for record in records],
                "last": records[-1].id if records else since,
            }
        )

    async def stream_ws(self, websocket: WebSocket) -> None:
        stream = self.stream
        await websocket.accept()
        if stream is None:
            await websocket.close(1013)
            return
        client = _StreamClient()
        stream.add(client)
        reader = asyncio.get_running_loop().create_task(_drain(websocket, client))
        try:
            while (frame := await client.next()) is not None:
                await websocket.send_text(frame.decode())
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            reader.cancel()
            stream.remove(client)
            with contextlib.suppress(Exception):
                await websocket.close()

    # --- admin ---------------------------------------------------------------------------------

    async def _session(self, request: Request) -> Session:
        token = _token(request)
        if not token:
            raise Unauthorized("log in first: POST /v1/admin/login, then send the token")
        session = Session(token=token)
        if self.issued.expired(token):
            self.issued.discard(token)
            await self._control().logout(session)
            raise Unauthorized("the admin session ended (an hour at most): log in again")
        return session

    async def admin_state(self, request: Request) -> Response:
        state = await self._control().admin_state()
        return JSONResponse(state.model_dump(mode="json"))

    async def login(self, request: Request) -> Response:
        body = LoginRequest.model_validate(await _json(request))
        control = self._control()
        state = await control.admin_state()
        now = self.engine.clock.now()
        if not state.password_set:
            raise HTTPException(
                409,
                "no admin password is set: set the first one (POST /v1/admin/first-password, "
                "the admin screens, or riskman set-admin-password)",
            )
        if state.locked_until is not None and state.locked_until > now:
            return _throttled(state.locked_until, now)
        uid = caller_uid(request)
        with _as_caller(uid):
            answer = await control.login(body)
            if answer.session is None:
                log.warning("control API: wrong admin password (uid %s)", uid)
                await self.engine.audit("login", "control API", old=None, new="wrong password")
                return JSONResponse(
                    {
                        "error": "wrong password",
                        "failures": answer.failures,
                        "locked_until": _iso_time(answer.locked_until),
                    },
                    status_code=401,
                )
            await self.engine.audit("login", "control API", old=None, new="session opened")
        self.issued.add(answer.session.token)
        return JSONResponse(
            {
                "token": answer.session.token,
                "expires": _iso_time(answer.session.expires),
                "idle_timeout": state.idle_lock,
            }
        )

    async def first_password(self, request: Request) -> Response:
        """The FIRST admin password, only while none is set (409 once one is, or once one
        has been: a deleted hash file is never replaced from here); answers a session.

        Why this may be done over the socket, by anyone who can open it (mode 0660, the
        trader's group): before a first password exists the admin screens have no lock at
        all, and an embedded terminal offers exactly this form to whoever sits at it; the
        guard's attached terminal is that same person. What it cannot do is what would be a
        way around the password: replace one (create-only, even against a racing writer),
        or recreate a deleted one (the anchor remembers that a password existed). Changing
        a password needs a session (`POST /v1/admin/password`), resetting it root or
        riskman's user (`riskman set-admin-password --reset`). Audited with the caller's
        uid; the password is never echoed.
        """
        body = PasswordChange.model_validate(await _json(request))
        control = self._control()
        try:
            state = await control.admin_state()
        except Unavailable:
            raise
        except ControlError as exc:  # a hash file that is missing (it existed) or unreadable
            raise Conflict(str(exc)) from None
        if state.password_set:
            raise HTTPException(
                409, "an admin password is already set: log in with it (POST /v1/admin/login)"
            )
        now = self.engine.clock.now()
        if state.locked_until is not None and state.locked_until > now:
            return _throttled(state.locked_until, now)
        uid = caller_uid(request)
        with _as_caller(uid):
            answer = await control.create_password(body)
        assert answer.session is not None
        log.warning("control API: the first admin password was set (uid %s)", uid)
        self.issued.add(answer.session.token)
        return JSONResponse(
            {
                "token": answer.session.token,
                "expires": _iso_time(answer.session.expires),
                "idle_timeout": state.idle_lock,
            }
        )

    async def logout(self, request: Request, session: Session) -> Response:
        await self._control().logout(session)
        self.issued.discard(session.token)
        return JSONResponse({"ok": True})

    async def get_audit(self, request: Request, session: Session) -> Response:
        limit = min(AUDIT_LIMIT, max(1, _int_param(request, "limit", 100) or 100))
        entries = await self._control().audit(session, limit)
        uids: dict[int, int | None] = {}
        if entries:
            marks = ",".join("?" * len(entries))
            rows = await self.engine.db.fetchall(
                f"SELECT id, uid FROM admin_audit WHERE id IN ({marks})",
                tuple(entry.id for entry in entries),
            )
            uids = {row["id"]: row["uid"] for row in rows}
        return JSONResponse(
            {
                "records": [
                    {**entry.model_dump(mode="json"), "uid": uids.get(entry.id)}
                    for entry in entries
                ]
            }
        )

    async def get_rules(self, request: Request, session: Session) -> Response:
        return _model(await self._control().get_rules(session))

    async def put_rules(self, request: Request, session: Session) -> Response:
        data = await _json(request)
        if not isinstance(data, Mapping):
            raise Invalid([], "expected a JSON object of rules")
        if "account" in data or "drop_own" in data:
            put = RulesPut.model_validate(data)
        else:
            put = RulesPut(rules=dict(data))
        return _model(await self._control().put_rules(session, put))

    async def get_accounts(self, request: Request, session: Session) -> Response:
        return _model(await self._control().get_accounts(session))

    async def put_accounts(self, request: Request, session: Session) -> Response:
        put = AccountsPut.model_validate(await _json(request))
        return _model(await self._control().put_accounts(session, put))

    async def post_lock(self, request: Request) -> Response:
        """Lock me out (issue 13): no password, it only makes riskman stricter."""
        lock = LockRequest.model_validate(await _json(request))
        with _as_caller(caller_uid(request)):
            locked = await self._control().lock_me_out(lock)
        return JSONResponse({"locked": [entry.model_dump(mode="json") for entry in locked]})

    async def get_lockouts(self, request: Request, session: Session) -> Response:
        entries = await self._control().lockouts(session)
        return JSONResponse({"lockouts": [entry.model_dump(mode="json") for entry in entries]})

    async def clear_lockout(self, request: Request, session: Session) -> Response:
        body = ClearBody.model_validate(await _json(request))
        lock_id = int(request.path_params["lock_id"])
        control = self._control()
        found = next((e for e in await control.lockouts(session) if e.id == lock_id), None)
        if found is None:
            raise HTTPException(404, f"no active lock with id {lock_id}")
        request_ = ClearLocks(account=found.account_id, lock=lock_id, reason=body.reason)
        return _model(await control.clear_lockouts(session, request_))

    async def withdraw_unlock(self, request: Request, session: Session) -> Response:
        request_id = int(request.path_params["request_id"])
        await self._control().withdraw_unlock(session, request_id)
        return JSONResponse({"ok": True})

    async def cancel_pending(self, request: Request, session: Session) -> Response:
        cancel = CancelPending.model_validate(await _json(request))
        return _model(await self._control().cancel_pending(session, cancel))

    async def get_schedule(self, request: Request, session: Session) -> Response:
        return _model(await self._control().get_schedule(session))

    async def put_schedule(self, request: Request, session: Session) -> Response:
        put = SchedulePut.model_validate(await _json(request))
        return _model(await self._control().put_schedule(session, put))

    async def post_password(self, request: Request, session: Session) -> Response:
        change = PasswordChange.model_validate(await _json(request))
        control = self._control()
        await control.change_password(session, change)
        # Every other session opened here ends with the old password; this one goes on.
        for token in self.issued.others(session.token):
            await control.logout(Session(token=token))
            self.issued.discard(token)
        return JSONResponse({"ok": True})


# --- helpers ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _as_caller(uid: int | None) -> Iterator[None]:
    token = AUDIT_CALLER.set(uid)
    try:
        yield
    finally:
        AUDIT_CALLER.reset(token)


def _model(value: BaseModel) -> Response:
    return JSONResponse(value.model_dump(mode="json"))


def _iso_time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


async def _drain(websocket: WebSocket, client: _StreamClient) -> None:
    """Read (and ignore) what the client sends, to notice when it goes away."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
    except Exception:
        pass
    client.close()


def _token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise HTTPException(400, "the body is not valid JSON") from None


def _int_param(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise HTTPException(400, f"{name} must be an integer") from None


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    problems = [
        f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
        for error in exc.errors(include_input=False)
    ]
    return JSONResponse({"error": "; ".join(problems), "problems": problems}, status_code=422)


async def _control_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ControlError)
    data: dict[str, Any] = {"error": str(exc)}
    headers: dict[str, str] = {}
    if isinstance(exc, Invalid):
        data["problems"] = exc.problems
    if isinstance(exc, Throttled):
        return _throttled(exc.until, datetime.now(exc.until.tzinfo))
    return JSONResponse(data, status_code=exc.status, headers=headers)


def _throttled(until: datetime, now: datetime) -> Response:
    wait = max(1, int((until - now).total_seconds() + 0.999))
    return JSONResponse(
        {
            "error": f"too many wrong passwords: try again in {wait} s",
            "retry_after": wait,
            "locked_until": until.isoformat(),
        },
        status_code=429,
        headers={"Retry-After": str(wait)},
    )


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("control API: %s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)

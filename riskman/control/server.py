"""The control API: HTTP + JSON (and a WebSocket stream) on a Unix socket, served by uvicorn
inside the engine's own event loop.

Read-only for any local process that can open the socket (mode 0660, `control.group`);
admin verbs need a session from `POST /v1/admin/login`, throttled by the same `AdminGuard`
as the admin screens. Every admin call is audited with the caller's uid (SO_PEERCRED).
A bad request gets a 4xx JSON answer; nothing a client sends can stop the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
import secrets
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn.protocols.http.h11_impl import H11Protocol

from riskman.admin import AdminGuard, PasswordError, PasswordStore
from riskman.config import Settings
from riskman.control import wire
from riskman.control.admin_ops import AdminOps, OpError
from riskman.engine.actions import EnforcementRecord
from riskman.engine.engine import AUDIT_CALLER, Engine
from riskman.engine.lockouts import LockoutChange
from riskman.engine.snapshot import Breach, EngineChange, LimitWarning, ResetDone
from riskman.storage.db import from_db_time

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


# --- request bodies ---------------------------------------------------------------------------


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginBody(Body):
    password: str = Field(max_length=1024)


class ClearBody(Body):
    reason: str = Field(min_length=1, max_length=500)


class PasswordBody(Body):
    password: str = Field(max_length=1024)
    """The new password (the session proved the current one)."""


class AccountRulesBody(Body):
    account: int
    rules: dict[str, Any]


class AccountsBody(Body):
    accounts: list[int] = Field(default_factory=list)
    """The accounts to guard; empty: every active account the gateway reports."""


class HolidayBody(Body):
    date: str
    name: str = "holiday"
    time: str | None = None
    """The early close (HH:MM); none: closed all day."""


class ScheduleBody(Body):
    daily_reset: str | None = None
    timezone: str | None = None
    holidays: list[HolidayBody] | None = None


# --- sessions ----------------------------------------------------------------------------------


SESSION_MAX = 3600.0
"""However busy, an admin session ends an hour after its login."""


@dataclass
class Session:
    uid: int | None
    expires: float
    ends: float


class Sessions:
    """Short-lived admin tokens: each ends after `idle` seconds without a call, and at the
    latest SESSION_MAX after the login."""

    def __init__(self, idle: Callable[[], float], monotonic: Callable[[], float]) -> None:
        self._idle = idle
        self._now = monotonic
        self._tokens: dict[str, Session] = {}

    def issue(self, uid: int | None) -> tuple[str, float]:
        self._drop_expired()
        token = secrets.token_urlsafe(32)
        idle = self._idle()
        now = self._now()
        self._tokens[token] = Session(uid, now + idle, now + SESSION_MAX)
        return token, idle

    def check(self, token: str) -> Session | None:
        session = self._tokens.get(token)
        if session is None:
            return None
        now = self._now()
        if session.expires <= now or session.ends <= now:
            del self._tokens[token]
            return None
        session.expires = min(session.ends, now + self._idle())
        return session

    def revoke(self, token: str) -> None:
        self._tokens.pop(token, None)

    def revoke_others(self, token: str) -> None:
        self._tokens = {t: s for t, s in self._tokens.items() if t == token}

    def _drop_expired(self) -> None:
        now = self._now()
        for token in [t for t, s in self._tokens.items() if s.expires <= now]:
            del self._tokens[token]


# --- the stream --------------------------------------------------------------------------------

_CHANGE_KINDS: dict[type[Any], str] = {
    EnforcementRecord: "enforcement",
    LockoutChange: "lockout",
    ResetDone: "reset",
    Breach: "breach",
    LimitWarning: "warning",
}


class Stream:
    """One snapshot per tick for every connected client, built once and shared. A slow client
    skips frames (it always gets the newest), so it never holds the engine back."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._clients: set[_StreamClient] = set()
        self._dirty = True
        self._changes: list[EngineChange] = []
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._seq = 0

    def _on_change(self, change: EngineChange) -> None:
        # Called inside the engine: O(1) only.
        self._dirty = True
        if type(change) in _CHANGE_KINDS:
            self._changes.append(change)

    def add(self, client: _StreamClient) -> None:
        self._clients.add(client)
        if self._task is None:
            self._unsubscribe = self._engine.subscribe(self._on_change)
            self._dirty = True
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
        while True:
            now = time.monotonic()
            if self._dirty or now - sent >= STREAM_FORCE:
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

    def _frame(self) -> bytes:
        self._seq += 1
        changes, self._changes = self._changes, []
        snapshot = wire.snapshot_to_json(self._engine.snapshot())
        encoded = b",".join(wire.change_to_json(_CHANGE_KINDS[type(c)], c) for c in changes)
        return b'{"type":"snapshot","seq":%d,"changes":[%s],"snapshot":%s}' % (
            self._seq,
            encoded,
            snapshot,
        )


class _StreamClient:
    def __init__(self) -> None:
        self.latest: bytes | None = None
        self.ready = asyncio.Event()
        self.closed = False

    def offer(self, frame: bytes) -> None:
        self.latest = frame
        self.ready.set()

    def close(self) -> None:
        self.closed = True
        self.ready.set()

    async def next(self) -> bytes | None:
        await self.ready.wait()
        self.ready.clear()
        if self.closed:
            return None
        frame, self.latest = self.latest, None
        return frame


# --- the application ---------------------------------------------------------------------------


Handler = Callable[[Request], Awaitable[Response]]


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
        ops: AdminOps | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.path = socket_path
        self.phase = phase
        self.started = datetime.now(UTC)
        self.guard = AdminGuard(PasswordStore(settings.password_file), engine.db, engine.clock)
        self.sessions = Sessions(lambda: self.engine.settings.admin.idle_lock, time.monotonic)
        self.ops = ops or AdminOps(engine)
        self.stream = Stream(engine)
        self._server: uvicorn.Server | None = None
        self._sock: socket.socket | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self.app = self._build_app()

    async def start(self) -> None:
        self._sock = bind_socket(self.path, self.settings.control.group)
        config = uvicorn.Config(
            self.app,
            http=PeerCredProtocol,
            ws="websockets-sansio",
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
            ws_ping_interval=None,
        )
        config.load()
        # uvicorn's start/stop chatter ("Waiting for connections to close") is not riskman's
        # news; its warnings and errors still reach the log.
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
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
        self.stream.close()
        self.sessions.revoke_others("")
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

    # --- routes ------------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        def admin(handler: Callable[[Request, Session], Awaitable[Response]]) -> Handler:
            async def guarded(request: Request) -> Response:
                session = self._session(request)
                token = AUDIT_CALLER.set(session.uid)
                try:
                    return await handler(request, session)
                finally:
                    AUDIT_CALLER.reset(token)

            return guarded

        routes = [
            Route("/v1/status", self.get_status, methods=["GET"]),
            Route("/v1/log", self.get_log, methods=["GET"]),
            Route("/v1/snapshot", self.get_snapshot, methods=["GET"]),
            Route("/v1/report", self.get_report, methods=["GET"]),
            Route("/v1/report/breach", self.get_breach, methods=["GET"]),
            WebSocketRoute("/v1/stream", self.stream_ws),
            Route("/v1/admin/login", self.login, methods=["POST"]),
            Route("/v1/admin/logout", admin(self.logout), methods=["POST"]),
            Route("/v1/admin/audit", admin(self.get_audit), methods=["GET"]),
            Route("/v1/admin/rules", admin(self.get_rules), methods=["GET"]),
            Route("/v1/admin/rules", admin(self.put_rules), methods=["PUT"]),
            Route("/v1/admin/accounts", admin(self.get_accounts), methods=["GET"]),
            Route("/v1/admin/accounts", admin(self.put_accounts), methods=["PUT"]),
            Route("/v1/admin/lockouts", admin(self.get_lockouts), methods=["GET"]),
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
                OpError: _op_error,
                Exception: _internal_error,
            },
        )

    async def get_status(self, request: Request) -> Response:
        engine = self.engine
        snapshot = engine.snapshot()
        guarded = {
            view.account_id: engine.is_guarded(view.account_id) for view in snapshot.accounts
        }
        unguarded = [(a.id, a.name) for a in engine.state.accounts() if not engine.is_guarded(a.id)]
        return JSONResponse(
            wire.status_json(
                snapshot,
                started=self.started,
                phase=self.phase(),
                guarded=guarded,
                unguarded=unguarded,
                pending=self.ops.pending(),
            )
        )

    async def get_snapshot(self, request: Request) -> Response:
        return Response(
            wire.snapshot_to_json(self.engine.snapshot()), media_type="application/json"
        )

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
        columns = "id, ts, account_id, rule, action, target, reason, result, detail, latency_ms"
        if since is None:
            rows = await self.engine.db.fetchall(
                f"SELECT {columns} FROM enforcement_log ORDER BY id DESC LIMIT ?", (limit,)
            )
            rows = list(reversed(rows))
        else:
            rows = await self.engine.db.fetchall(
                f"SELECT {columns} FROM enforcement_log WHERE id > ? ORDER BY id LIMIT ?",
                (since, limit),
            )
        records = [
            {
                "id": row["id"],
                "ts": _iso(row["ts"]),
                "account": row["account_id"],
                "rule": row["rule"],
                "action": row["action"],
                "target": row["target"],
                "reason": row["reason"],
                "result": row["result"],
                "detail": row["detail"],
                "latency_ms": row["latency_ms"],
            }
            for row in rows
        ]
        last = records[-1]["id"] if records else since
        return JSONResponse({"records": records, "last": last})

    async def stream_ws(self, websocket: WebSocket) -> None:
        await websocket.accept()
        client = _StreamClient()
        self.stream.add(client)
        reader = asyncio.get_running_loop().create_task(_drain(websocket, client))
        try:
            while (frame := await client.next()) is not None:
                await websocket.send_text(frame.decode())
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            reader.cancel()
            self.stream.remove(client)
            with contextlib.suppress(Exception):
                await websocket.close()

    # --- admin ---------------------------------------------------------------------------------

    def _session(self, request: Request) -> Session:
        token = _token(request)
        session = self.sessions.check(token) if token else None
        if session is None:
            raise HTTPException(401, "log in first: POST /v1/admin/login, then send the token")
        return session

    async def login(self, request: Request) -> Response:
        body = LoginBody.model_validate(await _json(request))
        locked = await self.guard.locked_until()
        if locked is not None:
            return _throttled(locked, self.engine.clock.now())
        try:
            if self.guard.store.load() is None:
                raise HTTPException(409, "no admin password is set: run riskman set-admin-password")
            attempt = await self.guard.try_password(body.password)
        except PasswordError as exc:
            raise HTTPException(409, str(exc)) from None
        uid = caller_uid(request)
        if not attempt.ok:
            log.warning("control API: wrong admin password (uid %s)", uid)
            with _as_caller(uid):
                await self.engine.audit("login", "control API", old=None, new="wrong password")
            raise HTTPException(401, "wrong password")
        token, idle = self.sessions.issue(uid)
        with _as_caller(uid):
            await self.engine.audit("login", "control API", old=None, new="session opened")
        return JSONResponse({"token": token, "idle_timeout": idle})

    async def logout(self, request: Request, session: Session) -> Response:
        self.sessions.revoke(_token(request))
        return JSONResponse({"ok": True})

    async def get_audit(self, request: Request, session: Session) -> Response:
        limit = min(AUDIT_LIMIT, max(1, _int_param(request, "limit", 100) or 100))
        rows = await self.engine.db.fetchall(
            "SELECT id, ts, action, target, old_value, new_value, reason, uid FROM admin_audit "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return JSONResponse(
            {
                "records": [
                    {
                        "id": row["id"],
                        "ts": _iso(row["ts"]),
                        "action": row["action"],
                        "target": row["target"],
                        "old": row["old_value"],
                        "new": row["new_value"],
                        "reason": row["reason"],
                        "uid": row["uid"],
                    }
                    for row in rows
                ]
            }
        )

    async def get_rules(self, request: Request, session: Session) -> Response:
        return JSONResponse(self.ops.rules())

    async def put_rules(self, request: Request, session: Session) -> Response:
        data = await _json(request)
        if isinstance(data, Mapping) and "account" in data:
            body = AccountRulesBody.model_validate(data)
            changed = await self.ops.set_rules(body.rules, account=body.account)
        else:
            if not isinstance(data, Mapping):
                raise HTTPException(400, "expected a JSON object of rules")
            changed = await self.ops.set_rules(dict(data), account=None)
        return JSONResponse({"changed": changed, "rules": self.ops.rules()})

    async def get_accounts(self, request: Request, session: Session) -> Response:
        return JSONResponse(await self.ops.accounts())

    async def put_accounts(self, request: Request, session: Session) -> Response:
        body = AccountsBody.model_validate(await _json(request))
        changed = await self.ops.set_accounts(body.accounts)
        return JSONResponse({"changed": changed, **(await self.ops.accounts())})

    async def get_lockouts(self, request: Request, session: Session) -> Response:
        return JSONResponse({"lockouts": self.ops.lockouts()})

    async def clear_lockout(self, request: Request, session: Session) -> Response:
        body = ClearBody.model_validate(await _json(request))
        lock_id = int(request.path_params["lock_id"])
        cleared = await self.ops.clear_lockout(lock_id, body.reason)
        return JSONResponse({"cleared": cleared})

    async def get_schedule(self, request: Request, session: Session) -> Response:
        return JSONResponse(self.ops.schedule())

    async def put_schedule(self, request: Request, session: Session) -> Response:
        body = ScheduleBody.model_validate(await _json(request))
        holidays = (
            None if body.holidays is None else [(h.date, h.name, h.time) for h in body.holidays]
        )
        changed = await self.ops.set_schedule(
            daily_reset=body.daily_reset, timezone=body.timezone, holidays=holidays
        )
        return JSONResponse({"changed": changed, **self.ops.schedule()})

    async def post_password(self, request: Request, session: Session) -> Response:
        body = PasswordBody.model_validate(await _json(request))
        await self.ops.set_password(body.password)
        # Every other session ends with the old password; this one goes on.
        self.sessions.revoke_others(_token(request))
        return JSONResponse({"ok": True})


# --- helpers ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _as_caller(uid: int | None) -> Any:
    token = AUDIT_CALLER.set(uid)
    try:
        yield
    finally:
        AUDIT_CALLER.reset(token)


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


def _iso(value: str | None) -> str | None:
    at = from_db_time(value)
    return None if at is None else at.isoformat()


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


async def _op_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OpError)
    return JSONResponse({"error": str(exc), "problems": exc.problems}, status_code=exc.status)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("control API: %s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)

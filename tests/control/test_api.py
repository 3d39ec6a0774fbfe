"""The control API through its real Unix socket: a real engine (FakeGateway), uvicorn, httpx."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from riskman.config import Settings, load_config
from riskman.control.client import ApiError, ControlClient, NotAnswering
from riskman.control.paths import MAX_SOCKET_PATH, socket_path
from riskman.control.server import SocketInUse, bind_socket
from riskman.core.clock import FakeClock
from riskman.core.locks import Unlock
from riskman.core.ports import PositionEvent
from riskman.core.views import LockoutChange
from tests.control.conftest import PASSWORD, ServedFactory
from tests.fakes import ES, T0, FakeGateway, position, settle


async def test_status_lists_accounts_with_integer_ids_and_pending_list(
    served: ServedFactory,
) -> None:
    engine, _server, client = await served({"accounts": [1001]})
    await engine.lockouts.set_lockout(
        1001, "test lock", T0 + timedelta(hours=1), rule="RULE-003", unlock=Unlock.TIME
    )

    status = await client.status()

    assert status["armed"] is False
    assert status["pid"] == os.getpid()
    assert status["phase"] == "running"
    assert status["pending"] == []
    assert status["hubs"] == []  # no feed on the FakeGateway: see test_runtime_api
    [account] = status["accounts"]
    assert account["id"] == 1001 and isinstance(account["id"], int)
    # Not armed (no hub here): nothing enforces, so the account is not guarded right now.
    assert account["status"] == "NOT GUARDED"
    assert account["realized"] == "0" and account["total"] == "0"
    assert account["locks"][0]["rule"] == "RULE-003"
    until = datetime.fromisoformat(account["locks"][0]["until"])
    assert until == T0 + timedelta(hours=1)
    assert account["trades"] == {"minute": 0, "hour": 0, "session": 0}


async def test_socket_is_mode_0660_and_a_stale_file_is_replaced(
    served: ServedFactory, tmp_path: Path
) -> None:
    # A socket file left by a killed engine: bound once, never closed by its owner.
    settings = load_config(_config(tmp_path))
    path = socket_path(settings)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()
    assert path.exists()

    _engine, server, client = await served()

    assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o660
    assert (await client.status())["pid"] == os.getpid()


def _config(tmp_path: Path) -> Path:
    from tests.control.conftest import write_config

    return write_config(tmp_path, {})


def test_the_socket_gets_the_configured_group(tmp_path: Path) -> None:
    import grp

    group = grp.getgrgid(os.getgid()).gr_name
    path = tmp_path / "g.sock"
    sock = bind_socket(path, group)
    try:
        assert os.stat(path).st_gid == os.getgid()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    finally:
        sock.close()
    with pytest.raises(ValueError, match=r"control\.group: no group named"):
        bind_socket(tmp_path / "h.sock", "no-such-group-riskman")


async def test_a_socket_another_process_answers_on_is_not_taken(tmp_path: Path) -> None:
    path = tmp_path / "x.sock"
    first = bind_socket(path, None)
    try:
        with pytest.raises(SocketInUse, match="another process answers"):
            bind_socket(path, None)
    finally:
        first.close()


def test_a_socket_path_too_long_becomes_a_short_one_found_the_same_way(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    settings = Settings(database=deep / "riskman.db")
    path = socket_path(settings)
    assert len(str(path)) <= MAX_SOCKET_PATH
    assert path == socket_path(Settings(database=deep / "riskman.db"))
    other = Settings(database=tmp_path / ("f" * 120) / "riskman.db")
    assert socket_path(other) != path


async def test_log_since_id_returns_only_newer_records(
    served: ServedFactory, gateway: FakeGateway
) -> None:
    engine, _server, client = await served(
        {"rules": {"max_contracts": {"enabled": True, "limit": 1, "action": "close_all"}}}
    )
    pos = position(1001, ES, 3)
    gateway.set_position(pos)
    engine.submit(PositionEvent(pos))
    await settle(engine)

    first = await client.log()
    assert sorted(r["action"] for r in first["records"]) == ["close", "flatten"]
    assert {r["rule"] for r in first["records"]} == {"RULE-001"}
    assert first["records"][0]["account_id"] == 1001
    assert (await client.log(since=first["last"]))["records"] == []
    assert (await client.log(since=0))["records"] == first["records"]
    newest = first["records"][-1]
    assert (await client.log(since=newest["id"] - 1))["records"] == [newest]


async def test_stream_sends_snapshots_and_the_news_of_a_lock(served: ServedFactory) -> None:
    engine, _server, client = await served({"accounts": [1001]})
    async with client.stream() as frames:
        iterator = aiter(frames)
        first = await asyncio.wait_for(anext(iterator), 5)
        assert first.snapshot.account(1001) is not None
        await engine.lockouts.set_lockout(
            1001, "streamed", T0 + timedelta(hours=1), rule="RULE-003"
        )
        async with asyncio.timeout(5):
            while True:
                frame = await anext(iterator)
                view = frame.snapshot.account(1001)
                if view is not None and view.status == "LOCKED":
                    break
        news = [c for c in frame.changes if isinstance(c, LockoutChange)]
        assert news and news[0].lockout.reason == "streamed"
        # The toast the screens would show, as the in-process interface makes it.
        assert [n.text for n in frame.notices] == ["streamed"]
        assert "LOCKED" in frame.notices[0].title
        # The stream carries the snapshot the screens use, losslessly.
        assert frame.snapshot.accounts[0].locks[0].reason == "streamed"


async def test_stream_sends_the_log_once_then_only_new_lines_and_clients_see_it_whole(
    served: ServedFactory, gateway: FakeGateway
) -> None:
    engine, _server, client = await served(
        {"rules": {"max_contracts": {"enabled": True, "limit": 1, "action": "close_all"}}}
    )

    async def breach() -> None:
        pos = position(1001, ES, 3)
        gateway.set_position(pos)
        engine.submit(PositionEvent(pos))
        await settle(engine)

    async def until_log(frames: Any, count: int) -> Any:
        async with asyncio.timeout(5):
            while True:
                frame = await anext(frames)
                if len(frame.snapshot.log) >= count:
                    return frame

    await breach()
    before = len(engine.snapshot().log)
    assert before >= 2
    raw = ControlClient(client.path)
    async with client.stream() as first, raw:
        frames = aiter(first)
        frame = await until_log(frames, before)
        assert frame.snapshot.log == engine.snapshot().log
        await breach()
        after = len(engine.snapshot().log)
        assert after > before
        frame = await until_log(frames, after)
        assert frame.snapshot.log == engine.snapshot().log
        # A client joining now gets the whole log in its first message.
        async with raw.stream() as second:
            joined = await until_log(aiter(second), after)
            assert joined.snapshot.log == engine.snapshot().log
    # On the wire, after the first message, only new lines travel.
    from websockets.asyncio.client import unix_connect

    async with unix_connect(str(client.path), "ws://riskman/v1/stream") as ws:
        first_message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert first_message["log_full"] is True and len(first_message["log"]) == after
        assert first_message["snapshot"]["log"] == []
        engine.submit_check("test")  # something changed: a new frame
        second_message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert second_message["log_full"] is False and second_message["log"] == []


async def test_admin_calls_without_a_valid_token_are_refused(served: ServedFactory) -> None:
    _engine, _server, client = await served()
    for call in (client.audit(), client.rules(), client.lockouts(), client.set_password("x" * 9)):
        with pytest.raises(ApiError) as refused:
            await call
        assert refused.value.status == 401
    client.token = "forged"
    with pytest.raises(ApiError) as refused:
        await client.set_rules({"max_contracts": {"limit": 1}})
    assert refused.value.status == 401


async def test_login_throttle_answers_429_after_three_wrong_tries_even_to_the_right_one(
    served: ServedFactory, clock: FakeClock
) -> None:
    _engine, _server, client = await served()
    for _ in range(3):
        with pytest.raises(ApiError) as wrong:
            await client.login("wrong password")
        assert wrong.value.status == 401
    with pytest.raises(ApiError) as throttled:
        await client.login(PASSWORD)
    assert throttled.value.status == 429
    assert throttled.value.data["retry_after"] == 30
    await clock.advance(31)
    await client.login(PASSWORD)
    assert client.token


async def test_admin_edits_write_apply_and_audit_with_the_callers_uid(
    served: ServedFactory,
) -> None:
    engine, _server, client = await served({"accounts": [1001]})
    await client.login(PASSWORD)

    answer = await client.set_rules({"daily_realized_loss": {"enabled": True, "limit": 300}})
    assert "rules.daily_realized_loss.limit" in [change.key for change in answer.changes]
    assert str(engine.settings.rules.daily_realized_loss.limit) == "300"
    config = type(engine.settings).config_path
    assert config is not None and "limit: 300" in config.read_text()

    answer = await client.set_rules({"max_contracts": {"limit": 2}}, account=1001)
    assert engine.settings.rules_for(1001).max_contracts.limit == 2

    audit = await client.audit()
    assert audit[0]["uid"] == os.getuid()
    assert {r["target"] for r in audit} >= {
        "rules.daily_realized_loss.limit",
        "accounts.0.rules.max_contracts.limit",
    }


async def test_an_invalid_edit_is_a_clear_4xx_and_changes_nothing(served: ServedFactory) -> None:
    engine, _server, client = await served()
    await client.login(PASSWORD)
    config = type(engine.settings).config_path
    assert config is not None
    before = config.read_text()
    with pytest.raises(ApiError) as bad:
        await client.set_rules({"daily_realized_loss": {"limit": "lots"}})
    assert bad.value.status == 422
    assert "daily_realized_loss" in str(bad.value.data["problems"])
    assert config.read_text() == before
    # A body that is not JSON, an unknown field, a bad path parameter: 4xx, engine alive.
    raw = httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=str(client.path)), base_url="http://riskman"
    )
    async with raw:
        headers = {"Authorization": f"Bearer {client.token}"}
        answer = await raw.put("/v1/admin/rules", content=b"{not json", headers=headers)
        assert answer.status_code == 400
        answer = await raw.post("/v1/admin/login", json={"password": 1, "extra": 2})
        assert answer.status_code == 422
        answer = await raw.get("/v1/log", params={"since": "yesterday"})
        assert answer.status_code == 400
        answer = await raw.post("/v1/admin/lockouts/abc/clear", headers=headers, json={})
        assert answer.status_code == 404
    assert (await client.status())["pid"] == os.getpid()


async def test_a_session_ends_at_the_latest_an_hour_after_login(
    served: ServedFactory, clock: FakeClock
) -> None:
    from riskman.control.server import SESSION_MAX

    _engine, server, client = await served()
    await client.login(PASSWORD)
    assert client.token is not None
    # Busy all along: a call every few minutes keeps the session from idling out...
    for _ in range(3):
        await clock.advance(240)
        await client.audit()
    # ...but an hour after the login it ends anyway, for good.
    real = server.issued._now
    server.issued._now = lambda: real() + SESSION_MAX
    with pytest.raises(ApiError) as ended:
        await client.audit()
    assert ended.value.status == 401
    server.issued._now = real
    with pytest.raises(ApiError) as still:
        await client.audit()
    assert still.value.status == 401
    # Idle past admin.idle_lock (300 s here): the session ends.
    await client.login(PASSWORD)
    await clock.advance(301)
    with pytest.raises(ApiError) as idle:
        await client.rules()
    assert idle.value.status == 401


async def test_garbage_on_the_socket_is_refused_and_the_engine_answers_on(
    served: ServedFactory,
) -> None:
    _engine, server, client = await served()
    for junk in (b"\x00\xffnot http\r\n\r\n", b"GET /v1/status HTTP/1.1\r\nHost: \xff\r\n", b""):
        reader, writer = await asyncio.open_unix_connection(str(server.path))
        writer.write(junk)
        await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(reader.read(), 5)
    with pytest.raises(ApiError) as missing:
        await client.request("GET", "/v1/nothing-here")
    assert missing.value.status == 404
    assert (await client.status())["pid"] == os.getpid()


async def test_clear_a_lockout_through_the_api_needs_a_reason_and_waits_the_delay(
    served: ServedFactory, clock: FakeClock
) -> None:
    engine, _server, client = await served({"accounts": [1001]})
    lock = await engine.lockouts.set_lockout(
        1001, "too much", T0 + timedelta(hours=2), rule="RULE-003"
    )
    assert lock is not None
    await client.login(PASSWORD)
    [listed] = await client.lockouts()
    assert listed.id == lock.id and listed.account_id == 1001
    with pytest.raises(ApiError) as refused:
        await client.clear_lockout(lock.id, "")
    assert refused.value.status == 422
    unlock = await client.clear_lockout(lock.id, "agreed with my coach")
    assert unlock.cleared == [] and unlock.request is not None
    assert unlock.due == clock.now() + timedelta(minutes=30)
    assert engine.lockouts.is_locked_out(1001), "an unlock waits for admin.unlock_delay"
    await clock.advance(engine.settings.admin.unlock_delay)
    assert not engine.lockouts.is_locked_out(1001)
    await client.login(PASSWORD)  # the admin session idled out meanwhile
    audit = await client.audit()
    actions = [a for a in audit if a["action"] in ("clear_lockout", "unlock_requested")]
    assert [a["action"] for a in actions] == ["clear_lockout", "unlock_requested"]
    assert actions[0]["reason"] == "agreed with my coach"


async def test_answers_never_echo_a_password_or_another_token(served: ServedFactory) -> None:
    _engine, _server, client = await served()
    await client.login(PASSWORD)
    first = client.token
    other = ControlClient(client.path)
    async with other:
        await other.login(PASSWORD)
        new_password = "another long secret"
        await other.set_password(new_password)
        seen = json.dumps(
            [
                await other.audit(),
                (await other.rules()).model_dump(mode="json"),
                (await other.accounts()).model_dump(mode="json"),
                (await other.schedule()).model_dump(mode="json"),
                await other.status(),
            ]
        )
    assert PASSWORD not in seen and new_password not in seen
    assert first is not None and first not in seen
    # The password change ended the other session.
    with pytest.raises(ApiError) as ended:
        await client.audit()
    assert ended.value.status == 401


async def test_a_client_says_clearly_when_nothing_answers(tmp_path: Path) -> None:
    async with ControlClient(tmp_path / "none.sock") as client:
        with pytest.raises(NotAnswering, match="no socket file"):
            await client.status()
        with pytest.raises(NotAnswering):
            async with client.stream():
                pass


async def test_the_server_stops_cleanly_with_a_stream_open(served: ServedFactory) -> None:
    _engine, server, client = await served()
    async with client.stream() as frames:
        iterator = aiter(frames)
        await asyncio.wait_for(anext(iterator), 5)
        await asyncio.wait_for(server.stop(), 5)
        with pytest.raises(StopAsyncIteration):
            async with asyncio.timeout(5):
                while True:
                    await anext(iterator)
    assert not server.path.exists()


def test_control_server_never_imports_textual() -> None:
    import subprocess
    import sys

    code = (
        "import sys, riskman.control.server, riskman.control.client, riskman.headless; "
        "print('textual' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_a_stream_frame_waits_for_a_burst_of_events_to_settle(
    served: ServedFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame due while the engine's events arrive is built once they have settled (so the
    attached terminals never decode one between a fill and its close)."""
    from riskman.control import server as server_module
    from riskman.core.views import BURST_SETTLE

    monkeypatch.setattr(server_module, "STREAM_EVERY", 0.002)  # a frame is always due
    engine, server, client = await served({"accounts": [1001]})
    async with client.stream() as frames:
        iterator = aiter(frames)
        await asyncio.wait_for(anext(iterator), 5)
        stream = server.stream
        loop = asyncio.get_running_loop()
        built: list[float] = []
        build = stream._frame

        def timed() -> Any:
            built.append(loop.time())
            return build()

        stream._frame = timed  # type: ignore[method-assign]
        changed = loop.time()
        engine.submit(PositionEvent(position(1001, ES, 1)))
        await settle(engine)
        async with asyncio.timeout(5):
            while not built:
                await anext(iterator)
    # The engine's last change (the position's) came at `changed` or a little later.
    assert built[0] - changed >= BURST_SETTLE * 0.9

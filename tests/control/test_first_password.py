"""The first admin password through the control API (issue 12): `POST /v1/admin/first-password`
sets it only while none is set (409 once one is, or once one has been), answers a session,
is audited with the caller's uid, and never echoes the password. Real socket, real hash file."""

from __future__ import annotations

import asyncio
import json
import os
import stat

import pytest

from riskman.admin import PasswordStore
from riskman.control.client import ApiError, ControlClient
from tests.control.conftest import PASSWORD, ServedFactory

FIRST = "the first admin password"


async def test_the_first_password_is_set_once_logs_in_and_is_audited(
    served: ServedFactory,
) -> None:
    engine, _server, client = await served(password=False)
    store = PasswordStore(engine.settings.password_file)
    assert (await client.admin_state()).password_set is False
    with pytest.raises(ApiError) as none_yet:
        await client.login(FIRST)
    assert none_yet.value.status == 409 and "first-password" in str(none_yet.value)

    with pytest.raises(ApiError) as short:
        await client.first_password("short")
    assert short.value.status == 422 and "at least 8" in str(short.value)
    assert not store.exists()

    await client.first_password(FIRST)
    assert client.token is not None
    audit = await client.audit()  # the answer is an admin session
    [row] = [r for r in audit if r["action"] == "password"]
    assert (row["new"], row["reason"], row["uid"]) == ("set", "first run", os.getuid())
    assert store.verify(FIRST)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert (await client.admin_state()).password_set is True
    assert FIRST not in json.dumps(audit)


async def test_it_never_replaces_a_password(served: ServedFactory) -> None:
    engine, _server, client = await served()  # PASSWORD is set
    before = engine.settings.password_file.read_text()
    with pytest.raises(ApiError) as refused:
        await client.first_password(FIRST)
    assert refused.value.status == 409 and "already set" in str(refused.value)
    assert FIRST not in json.dumps(refused.value.data)
    assert engine.settings.password_file.read_text() == before
    assert client.token is None
    await client.login(PASSWORD)  # the password in force is still the one


async def test_a_deleted_hash_file_is_not_replaced_from_the_socket(served: ServedFactory) -> None:
    engine, _server, client = await served()
    engine.settings.password_file.unlink()  # the anchor remembers that a password existed
    with pytest.raises(ApiError) as refused:
        await client.first_password(FIRST)
    assert refused.value.status == 409 and "missing" in str(refused.value)
    assert not engine.settings.password_file.exists()


async def test_two_racing_first_passwords_make_one_password(served: ServedFactory) -> None:
    engine, _server, client = await served(password=False)
    other = ControlClient(client.path)
    async with other:
        results = await asyncio.gather(
            client.first_password(FIRST),
            other.first_password("another first password"),
            return_exceptions=True,
        )
    refused = [r for r in results if isinstance(r, ApiError)]
    assert len(refused) == 1 and refused[0].status == 409
    winner = FIRST if results[0] is None else "another first password"
    store = PasswordStore(engine.settings.password_file)
    assert store.verify(winner)
    rows = await engine.db.fetchall("SELECT new_value FROM admin_audit WHERE action = 'password'")
    assert [r["new_value"] for r in rows] == ["set"]

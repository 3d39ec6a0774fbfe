"""The REST API over real HTTP: envelope, per-endpoint codes, auth, faults, recorded requests."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from riskman.core.enums import OrderStatus
from riskman.core.models import Contract, Order, parse_list, parse_model
from riskman.sim import Simulator

from .conftest import ACCOUNT, ES, MNQ, Api

LOGIN = {"userName": "demo", "apiKey": "demo"}
SINCE = "2020-01-01T00:00:00Z"


def _jwt_payload(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def _place(**fields: Any) -> dict[str, Any]:
    body = {"accountId": ACCOUNT, "contractId": MNQ, "type": 2, "side": 0, "size": 1}
    body.update(fields)
    return body


# --- auth -------------------------------------------------------------------------------------


async def test_login_is_case_insensitive_and_returns_a_jwt_with_exp(
    client: httpx.AsyncClient,
) -> None:
    reply = await client.post("/api/Auth/loginKey", json={"userName": "DeMo", "apiKey": "demo"})

    body = reply.json()
    assert reply.status_code == 200
    assert (body["success"], body["errorCode"], body["errorMessage"]) == (True, 0, None)
    claims = _jwt_payload(body["token"])
    assert claims["sub"] == "demo"
    assert abs(claims["exp"] - (time.time() + 86400)) < 60


@pytest.mark.parametrize(
    "credentials", [{"userName": "demo", "apiKey": "DEMO"}, {"userName": "x", "apiKey": "demo"}]
)
async def test_wrong_credentials_are_code_3_with_http_200(
    client: httpx.AsyncClient, credentials: dict[str, str]
) -> None:
    reply = await client.post("/api/Auth/loginKey", json=credentials)

    assert reply.status_code == 200
    assert reply.json() == {"success": False, "errorCode": 3, "errorMessage": None, "token": None}


async def test_reject_logins_fault_refuses_good_credentials(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.faults.reject_logins = True
    assert (await client.post("/api/Auth/loginKey", json=LOGIN)).json()["errorCode"] == 3
    sim.faults.reject_logins = False
    assert (await client.post("/api/Auth/loginKey", json=LOGIN)).json()["success"] is True


@pytest.mark.parametrize(
    "content",
    [b"{}", b'{"userName": "demo"}', b'{"apiKey": "demo"}', b"not json", b"", b"[1, 2]"],
)
async def test_login_body_missing_a_field_is_http_400(
    client: httpx.AsyncClient, content: bytes
) -> None:
    reply = await client.post(
        "/api/Auth/loginKey", content=content, headers={"Content-Type": "application/json"}
    )

    assert reply.status_code == 400
    assert reply.json()["status"] == 400


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer not.a.token", "Basic abc"])
async def test_calls_without_a_valid_bearer_token_are_http_401(
    client: httpx.AsyncClient, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}

    reply = await client.post(
        "/api/Account/search", json={"onlyActiveAccounts": True}, headers=headers
    )

    assert reply.status_code == 401


async def test_expired_tokens_get_http_401_and_a_new_login_works(
    sim: Simulator, client: httpx.AsyncClient, token: str
) -> None:
    sim.expire_tokens()

    reply = await client.post(
        "/api/Account/search",
        json={"onlyActiveAccounts": True},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert reply.status_code == 401
    assert "expired" in reply.headers["WWW-Authenticate"]
    validate = await client.post("/api/Auth/validate", headers={"Authorization": f"Bearer {token}"})
    assert validate.status_code == 401

    fresh = (await client.post("/api/Auth/loginKey", json=LOGIN)).json()["token"]
    again = await client.post(
        "/api/Account/search",
        json={"onlyActiveAccounts": True},
        headers={"Authorization": f"Bearer {fresh}"},
    )
    assert again.status_code == 200


async def test_validate_returns_a_new_token_and_keeps_the_old_one_valid(
    client: httpx.AsyncClient, token: str, api: Api
) -> None:
    body = await api("Auth/validate", {})

    assert body["success"] is True and body["newToken"] != token
    assert _jwt_payload(body["newToken"])["exp"] >= _jwt_payload(token)["exp"]
    reply = await client.post(
        "/api/Account/search",
        json={"onlyActiveAccounts": True},
        headers={"Authorization": f"Bearer {body['newToken']}"},
    )
    assert reply.json()["success"] is True


async def test_ping_is_a_get_without_auth(client: httpx.AsyncClient) -> None:
    reply = await client.get("/api/Status/ping")

    assert reply.status_code == 200


# --- accounts, positions, orders --------------------------------------------------------------


async def test_account_search_lists_the_default_accounts(api: Api) -> None:
    body = await api("Account/search", {"onlyActiveAccounts": True})

    assert body["success"] is True
    assert body["accounts"] == [
        {
            "id": 1001,
            "name": "DEMO-50K-1",
            "balance": 50000,
            "canTrade": True,
            "isVisible": True,
            "simulated": True,
        },
        {
            "id": 1002,
            "name": "DEMO-50K-2",
            "balance": 50000,
            "canTrade": True,
            "isVisible": True,
            "simulated": True,
        },
    ]


async def test_a_required_field_missing_or_of_the_wrong_type_is_http_400(
    client: httpx.AsyncClient, token: str
) -> None:
    headers = {"Authorization": f"Bearer {token}"}

    missing = await client.post("/api/Order/cancel", json={"orderId": 1}, headers=headers)
    wrong = await client.post(
        "/api/Position/searchOpen", json={"accountId": "1001"}, headers=headers
    )

    assert missing.status_code == 400 and "accountId" in missing.json()["errors"]
    assert wrong.status_code == 400 and "accountId" in wrong.json()["errors"]


async def test_place_search_and_cancel_round_trip(sim: Simulator, api: Api) -> None:
    sim.set_price(MNQ, "20000")
    placed = await api("Order/place", _place(type=1, limitPrice=19990.25, customTag="r1"))
    assert placed == {
        "success": True,
        "errorCode": 0,
        "errorMessage": None,
        "orderId": placed["orderId"],
    }

    open_orders = await api("Order/searchOpen", {"accountId": ACCOUNT})
    [order] = parse_list(Order, open_orders["orders"], "orders")
    assert (order.id, order.status, order.limit_price, order.custom_tag) == (
        placed["orderId"],
        OrderStatus.OPEN,
        Decimal("19990.25"),
        "r1",
    )

    cancelled = await api("Order/cancel", {"accountId": ACCOUNT, "orderId": placed["orderId"]})
    assert cancelled == {"success": True, "errorCode": 0, "errorMessage": None}
    assert (await api("Order/searchOpen", {"accountId": ACCOUNT}))["orders"] == []
    history = await api("Order/search", {"accountId": ACCOUNT, "startTimestamp": SINCE})
    assert [o["status"] for o in history["orders"]] == [OrderStatus.CANCELLED]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await api("Order/search", {"accountId": ACCOUNT, "startTimestamp": future}))[
        "orders"
    ] == []


async def test_prices_are_json_numbers(
    sim: Simulator, client: httpx.AsyncClient, api: Api, token: str
) -> None:
    sim.set_price(MNQ, "20000")
    await api("Order/place", _place(type=1, limitPrice=19990.25))

    reply = await client.post(
        "/api/Order/searchOpen",
        json={"accountId": ACCOUNT},
        headers={"Authorization": f"Bearer {token}"},
    )

    assert '"limitPrice":19990.25' in reply.text.replace(" ", "")


async def test_search_open_hides_suspended_bracket_legs_that_v2_query_shows(
    sim: Simulator, api: Api
) -> None:
    sim.set_price(MNQ, "20000")
    placed = await api(
        "Order/place",
        _place(
            type=1,
            limitPrice=19990,
            stopLossBracket={"ticks": -10, "type": 4},
            takeProfitBracket={"ticks": 20, "type": 1},
        ),
    )

    visible = await api("Order/searchOpen", {"accountId": ACCOUNT})
    working = await api(
        "Order/v2/query",
        {"filter": {"accountId": ACCOUNT, "statuses": [1, 8]}, "includeTotalCount": True},
    )

    assert [o["id"] for o in visible["orders"]] == [placed["orderId"]]
    assert working["totalCount"] == 3
    legs = [o for o in working["orders"] if o["status"] == OrderStatus.SUSPENDED]
    assert {o["parentOrderId"] for o in legs} == {placed["orderId"]}


async def test_close_and_partial_close_codes_differ(sim: Simulator, api: Api) -> None:
    flat_close = await api("Position/closeContract", {"accountId": ACCOUNT, "contractId": MNQ})
    flat_partial = await api(
        "Position/partialCloseContract", {"accountId": ACCOUNT, "contractId": MNQ, "size": 1}
    )
    assert (flat_close["errorCode"], flat_partial["errorCode"]) == (2, 2)

    await api("Order/place", _place(size=2))
    too_big = await api(
        "Position/partialCloseContract", {"accountId": ACCOUNT, "contractId": MNQ, "size": 3}
    )
    assert too_big["errorCode"] == 5  # InvalidCloseSize
    sim.set_halted(True, MNQ)
    halted_close = await api("Position/closeContract", {"accountId": ACCOUNT, "contractId": MNQ})
    halted_partial = await api(
        "Position/partialCloseContract", {"accountId": ACCOUNT, "contractId": MNQ, "size": 1}
    )
    assert (halted_close["errorCode"], halted_partial["errorCode"]) == (5, 6)
    assert halted_partial["errorMessage"] is None
    sim.set_halted(False)

    done = await api("Position/closeContract", {"accountId": ACCOUNT, "contractId": MNQ})
    assert done == {"success": True, "errorCode": 0, "errorMessage": None}  # no orderId
    assert (await api("Position/searchOpen", {"accountId": ACCOUNT}))["positions"] == []
    unknown = await api("Position/closeContract", {"accountId": 4242, "contractId": MNQ})
    assert unknown["errorCode"] == 1


async def test_place_error_codes(sim: Simulator, api: Api) -> None:
    assert (await api("Order/place", _place(accountId=4242)))["errorCode"] == 1
    assert (await api("Order/place", _place(contractId="CON.F.US.ZZZ.Z26")))["errorCode"] == 8
    assert (await api("Order/place", _place(customTag="dup")))["success"] is True
    duplicate = await api("Order/place", _place(customTag="dup"))
    assert (duplicate["errorCode"], duplicate["orderId"]) == (2, None)

    sim.set_bracket_mode(ACCOUNT, "position")
    bracketed = await api("Order/place", _place(stopLossBracket={"ticks": -8, "type": 4}))
    assert bracketed["success"] is False and bracketed["errorCode"] == 2
    assert bracketed["errorMessage"] == (
        "Brackets cannot be used with Position Brackets. You must enable Auto OCO Brackets."
    )
    assert isinstance(bracketed["orderId"], int)  # a rejected order with a real id

    sim.set_can_trade(ACCOUNT, False)
    assert (await api("Order/place", _place()))["errorCode"] == 4


async def test_modify_and_cancel_codes(sim: Simulator, api: Api) -> None:
    sim.set_price(MNQ, "20000")
    order_id = (await api("Order/place", _place(type=1, limitPrice=19990)))["orderId"]

    assert (await api("Order/cancel", {"accountId": ACCOUNT, "orderId": 1}))["errorCode"] == 2
    assert (await api("Order/cancel", {"accountId": 4242, "orderId": order_id}))["errorCode"] == 1
    assert (await api("Order/modify", {"accountId": ACCOUNT, "orderId": 1, "size": 2}))[
        "errorCode"
    ] == 2
    unaligned = await api(
        "Order/modify", {"accountId": ACCOUNT, "orderId": order_id, "limitPrice": 19990.1}
    )
    assert unaligned["errorCode"] == 3
    moved = await api(
        "Order/modify", {"accountId": ACCOUNT, "orderId": order_id, "limitPrice": 19985.5}
    )
    assert moved["success"] is True
    [order] = sim.open_orders(ACCOUNT)
    assert order.limit_price == Decimal("19985.5")


async def test_trade_search_returns_fills_with_pnl_and_fees(sim: Simulator, api: Api) -> None:
    sim.set_price(MNQ, "20000")
    await api("Order/place", _place(size=2))  # 20000.25
    sim.set_price(MNQ, "20010")
    await api("Position/closeContract", {"accountId": ACCOUNT, "contractId": MNQ})  # 20010

    body = await api("Trade/search", {"accountId": ACCOUNT, "startTimestamp": SINCE})

    opening, closing = body["trades"]
    assert (opening["profitAndLoss"], opening["fees"]) == (None, 0.74)
    assert (closing["profitAndLoss"], closing["price"], closing["side"]) == (39, 20010, 1)
    assert sim.balance(ACCOUNT) == Decimal("50037.52")


# --- contracts and bars -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("contract_id", "name", "symbol_id", "tick_size", "tick_value"),
    [
        ("CON.F.US.MNQ.Z26", "MNQZ6", "F.US.MNQ", "0.25", "0.50"),
        ("CON.F.US.ENQ.Z26", "NQZ6", "F.US.ENQ", "0.25", "5.00"),
        ("CON.F.US.EP.Z26", "ESZ6", "F.US.EP", "0.25", "12.50"),
        ("CON.F.US.MES.Z26", "MESZ6", "F.US.MES", "0.25", "1.25"),
        ("CON.F.US.RTY.Z26", "RTYZ6", "F.US.RTY", "0.10", "5.00"),
        ("CON.F.US.M2K.Z26", "M2KZ6", "F.US.M2K", "0.10", "0.50"),
        ("CON.F.US.YM.Z26", "YMZ6", "F.US.YM", "1", "5.00"),
        ("CON.F.US.MYM.Z26", "MYMZ6", "F.US.MYM", "1", "0.50"),
        ("CON.F.US.CLE.F27", "CLF7", "F.US.CLE", "0.01", "10.00"),
        ("CON.F.US.MCLE.F27", "MCLF7", "F.US.MCLE", "0.01", "1.00"),
        ("CON.F.US.GCE.G27", "GCG7", "F.US.GCE", "0.10", "10.00"),
        ("CON.F.US.MGC.G27", "MGCG7", "F.US.MGC", "0.10", "1.00"),
    ],
)
async def test_contract_search_by_id_has_the_tick_table(
    api: Api, contract_id: str, name: str, symbol_id: str, tick_size: str, tick_value: str
) -> None:
    body = await api("Contract/searchById", {"contractId": contract_id})

    contract = parse_model(Contract, body["contract"], "contract")
    assert (contract.id, contract.name, contract.symbol_id) == (contract_id, name, symbol_id)
    assert (contract.tick_size, contract.tick_value) == (Decimal(tick_size), Decimal(tick_value))
    assert contract.active_contract is True


async def test_contract_lookups_that_fail_and_text_search(api: Api) -> None:
    missing = await api("Contract/searchById", {"contractId": "CON.F.US.NOPE.Z26"})
    assert (missing["errorCode"], missing["contract"]) == (1, None)

    found = await api("Contract/search", {"searchText": "nasdaq", "live": False})
    assert {c["id"] for c in found["contracts"]} == {"CON.F.US.MNQ.Z26", "CON.F.US.ENQ.Z26"}


async def test_retrieve_bars_builds_bars_from_the_quote_history(sim: Simulator, api: Api) -> None:
    for price in ("6650", "6652", "6649", "6651"):
        sim.set_price(ES, price)
    now = datetime.now(UTC)
    request = {
        "contractId": ES,
        "live": False,
        "startTime": (now - timedelta(hours=1)).isoformat(),
        "endTime": (now + timedelta(minutes=1)).isoformat(),
        "unit": 7,  # tick bars
        "unitNumber": 2,
        "limit": 10,
        "includePartialBar": True,
    }

    body = await api("History/retrieveBars", request)

    newest, oldest = body["bars"]  # newest first
    assert (oldest["o"], oldest["h"], oldest["l"], oldest["c"]) == (6650, 6652, 6650, 6652)
    assert (newest["o"], newest["h"], newest["l"], newest["c"]) == (6649, 6651, 6649, 6651)
    minute = await api("History/retrieveBars", {**request, "unit": 2, "unitNumber": 1})
    assert minute["success"] is True and 1 <= len(minute["bars"]) <= 2
    assert sum(b["v"] for b in minute["bars"]) == 4


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"contractId": "CON.F.US.NOPE.Z26"}, 1),
        ({"unit": 9}, 2),
        ({"unitNumber": 0}, 3),
        ({"limit": 20001}, 4),
    ],
)
async def test_retrieve_bars_error_codes(api: Api, change: dict[str, Any], code: int) -> None:
    request = {
        "contractId": ES,
        "live": False,
        "startTime": SINCE,
        "endTime": "2030-01-01T00:00:00Z",
        "unit": 2,
        "unitNumber": 1,
        "limit": 10,
        "includePartialBar": False,
    }

    body = await api("History/retrieveBars", {**request, **change})

    assert (body["success"], body["errorCode"], body["bars"]) == (False, code, None)


# --- faults and recorded requests -------------------------------------------------------------


async def test_fail_with_an_http_status_does_nothing_for_that_many_calls(
    sim: Simulator, client: httpx.AsyncClient, token: str
) -> None:
    sim.faults.fail("/api/Order/place", http_status=429, times=2)
    headers = {"Authorization": f"Bearer {token}"}

    statuses = [
        (await client.post("/api/Order/place", json=_place(), headers=headers)).status_code
        for _ in range(3)
    ]

    assert statuses == [429, 429, 200]
    assert len(sim.orders(ACCOUNT)) == 1
    assert [r.status for r in sim.requests if r.endpoint == "Order/place"] == [429, 429, 200]


async def test_fail_with_an_error_code_answers_success_false_and_does_nothing(
    sim: Simulator, api: Api
) -> None:
    await api("Order/place", _place())
    sim.faults.fail("Position/closeContract", error_code=6, error_message="Order pending")

    body = await api("Position/closeContract", {"accountId": ACCOUNT, "contractId": MNQ})

    assert body == {"success": False, "errorCode": 6, "errorMessage": "Order pending"}
    assert len(sim.positions(ACCOUNT)) == 1
    assert (await api("Position/closeContract", {"accountId": ACCOUNT, "contractId": MNQ}))[
        "success"
    ]


async def test_delay_holds_the_reply_but_the_close_happens_at_once(
    sim: Simulator, client: httpx.AsyncClient, api: Api, token: str
) -> None:
    await api("Order/place", _place())
    sim.faults.delay("Position/closeContract", 30.0)
    start = time.monotonic()

    with pytest.raises(httpx.ReadTimeout):
        await client.post(
            "/api/Position/closeContract",
            json={"accountId": ACCOUNT, "contractId": MNQ},
            headers={"Authorization": f"Bearer {token}"},
            timeout=0.3,
        )

    recorded = await sim.wait_for_request("Position/closeContract", since=start)
    assert recorded.response == {"success": True, "errorCode": 0, "errorMessage": None}
    assert sim.positions(ACCOUNT) == []
    assert time.monotonic() - start < 5


async def test_wait_for_request_is_woken_by_the_matching_call(sim: Simulator, api: Api) -> None:
    waiter = asyncio.create_task(
        sim.wait_for_request("Order/place", lambda r: r.body.get("size") == 3)
    )
    await api("Order/place", _place(size=1))
    assert not waiter.done()

    await api("Order/place", _place(size=3))
    recorded = await asyncio.wait_for(waiter, 2.0)

    assert recorded.endpoint == "Order/place"
    assert recorded.body == _place(size=3)  # the body as sent, plain JSON types
    assert recorded.status == 200 and recorded.response is not None
    assert recorded.response["orderId"] == sim.orders(ACCOUNT)[-1].id
    assert recorded.received <= time.monotonic()


async def test_wait_for_request_times_out_with_timeout_error(sim: Simulator) -> None:
    with pytest.raises(TimeoutError, match="Order/cancel"):
        await sim.wait_for_request("Order/cancel", timeout=0.05)


def test_fault_endpoint_names_are_checked() -> None:
    sim = Simulator()
    with pytest.raises(ValueError, match="unknown endpoint"):
        sim.faults.fail("Position/closeContractPartial", error_code=1)
    with pytest.raises(ValueError):
        sim.faults.fail("Order/place")


async def test_spec_only_endpoints_logout_search_by_id_and_available(
    sim: Simulator, client: httpx.AsyncClient, api: Api, token: str
) -> None:
    order_id = (await api("Order/place", _place()))["orderId"]

    found = await api("Order/searchById", {"accountId": ACCOUNT, "orderId": order_id})
    missing = await api("Order/searchById", {"accountId": ACCOUNT, "orderId": 1})
    available = await api("Contract/available", {"live": False})
    assert found["order"]["id"] == order_id and found["order"]["status"] == OrderStatus.FILLED
    assert (missing["errorCode"], missing["order"]) == (1, None)
    assert len(available["contracts"]) == 12

    assert (await api("Auth/logout", {}))["success"] is True
    after = await client.post(
        "/api/Account/search",
        json={"onlyActiveAccounts": True},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert after.status_code == 401

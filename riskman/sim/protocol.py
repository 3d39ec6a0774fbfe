"""The SignalR JSON hub protocol: records, message types and the handshake (PROJECTX_API.md §3.1).

Every record is one JSON object followed by the record separator 0x1E; a WebSocket message may
carry several records, and a record never spans two messages in practice (a reader still keeps
the unterminated tail, as ASP.NET does).
"""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Any

RS = "\x1e"

SUPPORTED_VERSIONS = frozenset({0, 1})


class MessageType(IntEnum):
    INVOCATION = 1
    STREAM_ITEM = 2
    COMPLETION = 3
    STREAM_INVOCATION = 4
    CANCEL_INVOCATION = 5
    PING = 6
    CLOSE = 7


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False) + RS


def invocation(target: str, arguments: list[Any]) -> str:
    return encode({"type": MessageType.INVOCATION.value, "target": target, "arguments": arguments})


def completion(invocation_id: Any, *, error: str | None = None) -> str:
    if error is not None:
        return encode(
            {"type": MessageType.COMPLETION.value, "invocationId": invocation_id, "error": error}
        )
    return encode(
        {"type": MessageType.COMPLETION.value, "invocationId": invocation_id, "result": None}
    )


def close(error: str | None = None, *, allow_reconnect: bool | None = None) -> str:
    message: dict[str, Any] = {"type": MessageType.CLOSE.value}
    if error is not None:
        message["error"] = error
    if allow_reconnect is not None:
        message["allowReconnect"] = allow_reconnect
    return encode(message)


PING = encode({"type": MessageType.PING.value})
HANDSHAKE_OK = "{}" + RS


def handshake_error(error: str) -> str:
    return encode({"error": error})


def check_handshake(record: str) -> str | None:
    """None if the handshake request is acceptable, else the error to answer with."""
    try:
        request = json.loads(record)
    except ValueError:
        return "Handshake request is not valid JSON."
    if not isinstance(request, dict):
        return "Handshake request must be a JSON object."
    protocol = request.get("protocol")
    version = request.get("version")
    if protocol != "json":
        return f"The protocol '{protocol}' is not supported."
    # signalrcore sends version 0 when it skips negotiation; browsers send 1.
    if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
        return f"The server does not support version {version} of the 'json' protocol."
    return None


def split_records(buffer: str) -> tuple[list[str], str]:
    """Complete records in `buffer` and the unterminated rest."""
    *records, rest = buffer.split(RS)
    return records, rest

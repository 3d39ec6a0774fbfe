"""When a gateway session token expires: the `exp` claim of its JWT."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime


def jwt_expiry(token: str) -> datetime | None:
    """The `exp` claim of a JWT (no signature check: we only want to know when to refresh)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
        exp = claims["exp"]
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            return None
        return datetime.fromtimestamp(float(exp), tz=UTC)
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeError, OverflowError, OSError):
        return None

"""Session tokens shaped like the gateway's JWTs.

A client reads `exp` from the payload without verifying the signature (project-x-py does), so
the token must be `base64url(header).base64url(payload).signature` with `exp` in epoch seconds.
The simulator itself trusts only its own registry: a token is valid while it is registered and
unexpired, which is what lets a test expire every token at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(slots=True)
class _Session:
    subject: str
    expires: float


class TokenIssuer:
    """Issues and checks tokens; `clock` returns epoch seconds."""

    def __init__(self, lifetime: float, clock: Callable[[], float] = time.time) -> None:
        if lifetime <= 0:
            raise ValueError("token lifetime must be positive")
        self.lifetime = lifetime
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self._sessions: dict[str, _Session] = {}

    def issue(self, subject: str) -> str:
        now = self._clock()
        expires = now + self.lifetime
        jti = secrets.token_hex(8)
        header = {"alg": "HS256", "typ": "JWT"}
        payload = {
            "sub": subject,
            "name": subject,
            "jti": jti,
            "iat": int(now),
            "exp": int(expires),
        }
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, payload)
        )
        signature = hmac.new(self._secret, signing_input.encode("ascii"), hashlib.sha256).digest()
        self._sessions[jti] = _Session(subject, expires)
        return f"{signing_input}.{_b64url(signature)}"

    def check(self, token: str | None) -> str | None:
        """The token's subject if it is one of ours and still valid, else None."""
        jti = self._jti(token)
        if jti is None:
            return None
        session = self._sessions.get(jti)
        if session is None or session.expires <= self._clock():
            return None
        return session.subject

    def is_expired(self, token: str | None) -> bool:
        """True for a genuine token of ours that has expired (the 401 then says so)."""
        jti = self._jti(token)
        session = self._sessions.get(jti) if jti is not None else None
        return session is not None and session.expires <= self._clock()

    def revoke(self, token: str | None) -> bool:
        jti = self._jti(token)
        return jti is not None and self._sessions.pop(jti, None) is not None

    def expire_all(self) -> None:
        """Every token issued so far is expired from now on; later logins get fresh ones."""
        for session in self._sessions.values():
            session.expires = 0.0

    def _jti(self, token: str | None) -> str | None:
        if not token:
            return None
        parts = token.split(".")
        if len(parts) != 3:
            return None
        signing_input = f"{parts[0]}.{parts[1]}".encode("ascii", errors="replace")
        expected = hmac.new(self._secret, signing_input, hashlib.sha256).digest()
        try:
            signature = _b64url_decode(parts[2])
            payload = json.loads(_b64url_decode(parts[1]))
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(signature, expected) or not isinstance(payload, dict):
            return None
        jti = payload.get("jti")
        return jti if isinstance(jti, str) else None

"""Secrets never reach a log line: the one redaction module.

`Secret` holds a token or key and registers it; `redact` hides every registered secret, any
`access_token=` value and any bearer value in a text; `SecretRedactingFilter` (installed by
`install_redaction` on a logger or handler) applies it to every record, tracebacks included.
"""

from __future__ import annotations

import logging
import re
from typing import Final

_TOKEN_IN_URL = re.compile(r"(access_token=)[^&\s\"']+", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9\-_.=+/]+")
_known_secrets: set[str] = set()
_MIN_SECRET_LEN = 6  # shorter strings would redact innocent text


def remember_secret(value: str) -> None:
    """Register a secret so :func:`redact` (and the log filter) hide it wherever it appears."""
    if len(value) >= _MIN_SECRET_LEN:
        _known_secrets.add(value)


def redact(text: str) -> str:
    """`text` with every known token/key, `access_token=` value and bearer value hidden."""
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, "<redacted>")
    text = _TOKEN_IN_URL.sub(r"\1<redacted>", text)
    return _BEARER.sub(r"\1<redacted>", text)


class SecretRedactingFilter(logging.Filter):
    """Rewrites a record's message so no registered secret or hub token can reach a handler.

    Installed on our loggers and on signalrcore's (which logs the hub URL, token included,
    at debug level). It is a second line of defence: nothing here logs a secret on purpose.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        # The traceback too: an exception's message can carry a URL with its token. It is
        # formatted here, redacted, and left in `exc_text`, which formatters use as is.
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let logging report it as usual
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        return True


_TRACEBACKS: Final = logging.Formatter()


_FILTER: Final = SecretRedactingFilter()


def install_redaction(logger: logging.Logger) -> None:
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


class Secret:
    """A string that never shows itself in a repr, str or f-string."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        remember_secret(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('<redacted>')"

    __str__ = __repr__

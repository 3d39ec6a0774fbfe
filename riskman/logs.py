"""Logging for the daemon and the terminal: text or JSON lines on stderr, secrets redacted.

The redaction filter sits on the handler, so it covers every library's records too
(signalrcore logs hub URLs, which carry the token, at debug level).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from riskman.core.redaction import SecretRedactingFilter, redact

# Attributes of every LogRecord; anything else was passed in `extra=` and goes into JSON.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value if isinstance(value, str | int | float | bool) else str(value)
        # The redaction filter leaves the traceback, redacted, in `exc_text`: use it as is.
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["error"] = redact(record.exc_text)
        return json.dumps(payload, ensure_ascii=False)


def setup_logging(
    fmt: str = "text", level: str | int = "INFO", stream: TextIO | None = None
) -> logging.Handler:
    """Send riskman's logs to `stream` (stderr); returns the handler (to remove it later)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(SecretRedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    quiet_libraries()
    return handler


def quiet_libraries() -> None:
    """Libraries that are chatty or could echo a URL with the token stay at WARNING."""
    for name in (
        "signalrcore",
        "SignalRCoreClient",
        "httpx",
        "httpcore",
        "websockets",
        "uvicorn",
        "uvicorn.error",
        "uvicorn.access",
        "asyncio",
        "aiosqlite",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)

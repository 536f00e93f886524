"""Keeps credentials out of the server's logs: uvicorn logs each request's path with its query
string, and a WebSocket URL may carry a one-time ticket."""

from __future__ import annotations

import logging
import re

# Query parameters only (after "?" or "&"), so a log line's own "code=1008" is left alone.
_SECRET_PARAMS = re.compile(r"(?i)([?&](?:ticket|token|access_token|code)=)[^&\s\"']+")


def redact(text: str) -> str:
    return _SECRET_PARAMS.sub(r"\1[redacted]", text)


class RedactCredentials(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install(*logger_names: str) -> None:
    for name in logger_names or ("uvicorn.access", "uvicorn.error", "uvicorn"):
        logging.getLogger(name).addFilter(RedactCredentials())

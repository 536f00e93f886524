"""What engines served by another process over HTTP share (openai_llm.py, ollama_llm.py).

- Whether their server is on this machine: only a loopback address is, by the same rule as
  privacy mode's run-time lock (`voice_server.privacy.is_local_address`, which a unit test keeps
  in agreement with `is_loopback_host`); a name other than localhost is not, even if it resolves
  to this machine today.
- A stream that stops at the caller's cancel even while it waits for the server's next chunk.
- Errors with the project's codes (models/base.py `EngineError`) and messages that say what went
  wrong and where, never the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TypeVar
from urllib.parse import urlsplit

from models.base import ChatMessage, EngineError

T = TypeVar("T")

# EngineError codes of a remote engine.
AUTH = "engine_auth"  # the key was refused (HTTP 401 or 403)
QUOTA = "engine_quota"  # the account's quota is spent (HTTP 429 saying so)
THROTTLED = "engine_throttled"  # too many requests for now (HTTP 429)
UNREACHABLE = "engine_unreachable"  # no connection to the server
TIMEOUT = "engine_timeout"  # the server did not answer in time
MODEL_MISSING = "engine_model_missing"  # no such model or deployment there (HTTP 404)
FAILED = "engine_error"  # anything else the server reported

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", ""})


def is_loopback_host(host: str) -> bool:
    """True for an address of this machine: a loopback or unspecified IP, or localhost."""
    host = host.strip("[]").lower()
    if host in _LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def host_of(url: str) -> str:
    """The host a URL names ('' for none); a bare 'host:port' is read as http://host:port."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    return parts.hostname or ""


def address_of(url: str) -> str:
    """host:port of a URL, for messages (never a user or password written into it)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host


def server_is_local(url: str, declared: bool | None) -> bool:
    """Whether a server at `url` runs on this machine. `declared` False makes a loopback address
    remote (a tunnel or port forward to another machine); True is accepted only where the host
    is loopback (see `check_declared_local`)."""
    return is_loopback_host(host_of(url)) and declared is not False


def check_declared_local(url: str, declared: bool | None) -> None:
    """Refuses `local=true` for a server that is not on a loopback address: privacy mode's
    run-time lock lets the server connect only to this machine, so such a server could never be
    used under it and calling it local would only hide where the text goes."""
    if declared and not is_loopback_host(host_of(url)):
        raise ValueError(
            f"local=true needs a server on this machine (a loopback address), not {host_of(url)!r}"
        )


def estimate_prompt_tokens(messages: Sequence[ChatMessage]) -> int:
    """A high estimate of a chat prompt's tokens (about 4 characters a token in English, plus the
    template's markers per message), for servers that report no usage. Used only until, or where,
    the server's own count arrives."""
    return sum(len(m.content) // 3 + 4 for m in messages) + 2


async def until_cancelled(
    items: AsyncIterator[T], cancel: threading.Event, *, poll_s: float = 0.05
) -> AsyncIterator[T]:
    """`items` until `cancel` is set. The event is a thread's (models/base.py), so it is polled:
    a cancel is noticed within `poll_s` even while the server is slow to send its next chunk,
    and the pending read is abandoned then. The caller closes the underlying stream."""
    while not cancel.is_set():
        step = asyncio.ensure_future(anext(items))
        try:
            while not step.done():
                await asyncio.wait({step}, timeout=poll_s)
                if cancel.is_set() and not step.done():
                    return
        finally:
            if not step.done():
                step.cancel()
                with contextlib.suppress(BaseException):
                    await step
        try:
            item = step.result()
        except StopAsyncIteration:
            return
        yield item


def redact(text: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def http_error(
    engine: str, where: str, status: int, detail: str = "", *, quota: bool = False
) -> EngineError:
    """The EngineError for an HTTP error status. `detail`: the server's own words (never for
    401/403, where a server may echo part of the key; the caller redacts the key from it)."""
    detail = " ".join(detail.split())[:200]
    said = f": {detail}" if detail else ""
    if status in (401, 403):
        return EngineError(
            f"{engine} at {where} refused the credentials (HTTP {status}): check the key or its permissions",
            code=AUTH,
        )
    if status == 429 and quota:
        return EngineError(f"{engine} at {where}: the quota is used up (HTTP 429){said}", code=QUOTA)
    if status == 429:
        return EngineError(f"{engine} at {where} is throttling requests (HTTP 429){said}", code=THROTTLED)
    if status == 404:
        return EngineError(f"{engine} at {where}: model or deployment not found (HTTP 404){said}", code=MODEL_MISSING)
    if status in (408, 504):
        return EngineError(f"{engine} at {where} timed out (HTTP {status}){said}", code=TIMEOUT)
    return EngineError(f"{engine} at {where} failed (HTTP {status}){said}", code=FAILED)

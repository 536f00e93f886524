"""Single-use, short-lived codes held in this server's memory.

Used for student sign-in links and WebSocket tickets. A code is redeemed at most once and only
before it expires. They live in memory: a restart forgets them (a new link is printed) and, with
several replicas, a code is redeemed on the replica that issued it.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    value: T
    expires_at: float


class OneTimeCodes(Generic[T]):
    def __init__(
        self, ttl_s: float, *, max_outstanding: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self._max = max_outstanding
        self._clock = clock
        # Keyed by a digest: a dump of this process's memory does not hand out live codes.
        self._entries: dict[bytes, _Entry[T]] = {}

    def issue(self, value: T) -> str:
        self._prune()
        if len(self._entries) >= self._max:
            raise OverflowError("too many outstanding codes; try again later")
        code = secrets.token_urlsafe(24)
        self._entries[_digest(code)] = _Entry(value, self._clock() + self.ttl_s)
        return code

    def redeem(self, code: str) -> T | None:
        """The value the code was issued for, once; None when unknown, used or expired."""
        entry = self._entries.pop(_digest(code), None)
        if entry is None or entry.expires_at <= self._clock():
            return None
        return entry.value

    def _prune(self) -> None:
        now = self._clock()
        for key in [k for k, e in self._entries.items() if e.expires_at <= now]:
            del self._entries[key]


def _digest(code: str) -> bytes:
    return hashlib.sha256(code.encode()).digest()

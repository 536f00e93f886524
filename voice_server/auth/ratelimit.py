"""Failed sign-ins, counted per client address and per username: after `max_failures` within
`window_s`, further tries are refused (HTTP 429 with Retry-After) until the oldest of those
failures leaves the window. A successful sign-in adds nothing, and clears its username's count
(its owner has shown the password); the address keeps its count.

Counts live in this process's memory, like the one-time codes: a restart forgets them and each
replica counts on its own, so with N replicas a guesser gets up to N times the limit. Usernames
are kept only as digests, so this memory holds no name.

The per-username limit also means anyone can lock an account out for one window by failing on
purpose; the owner can still be let in by an admin's link or by waiting.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import deque
from collections.abc import Callable, Iterable

# Bounds memory under a flood of distinct addresses or names; the oldest entries go first.
MAX_TRACKED = 100_000


def address_key(address: str | None) -> str:
    return f"addr:{address or 'unknown'}"


def username_key(username: str) -> str:
    digest = hashlib.sha256(username.strip().casefold().encode()).hexdigest()
    return f"user:{digest}"


class FailureLimiter:
    def __init__(
        self, max_failures: int, window_s: float, *, clock: Callable[[], float] = time.monotonic,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._max_tracked = max_tracked
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, keys: Iterable[str]) -> int | None:
        """Whole seconds to wait when any of `keys` is over the limit; None when a try is allowed."""
        now = self._clock()
        waits = []
        for key in keys:
            recent = self._recent(key, now)
            if recent is not None and len(recent) >= self.max_failures:
                waits.append(recent[-self.max_failures] + self.window_s - now)
        return max(1, math.ceil(max(waits))) if waits else None

    def failed(self, keys: Iterable[str]) -> None:
        now = self._clock()
        for key in keys:
            recent = self._recent(key, now)
            if recent is None:
                if len(self._failures) >= self._max_tracked:
                    self._prune(now)
                recent = self._failures[key] = deque(maxlen=self.max_failures)
            recent.append(now)

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        recent = self._failures.get(key)
        if recent is None:
            return None
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        if not recent:
            del self._failures[key]
            return None
        return recent

    def _prune(self, now: float) -> None:
        for key in list(self._failures):
            self._recent(key, now)
        while len(self._failures) >= self._max_tracked:
            del self._failures[next(iter(self._failures))]  # dicts keep insertion order: the oldest

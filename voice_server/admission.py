"""One admission point for every voice session, whatever transport carries it.

A WebSocket connection and a WebRTC peer each hold one slot of `max_sessions` from the moment they
are accepted until they close. A connection that has not started its session within
`start_timeout_s` is expired: its slot is freed at once and the transport is told to say why and
hang up, so idle sockets cannot keep students out.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Protocol

log = logging.getLogger(__name__)

SESSION_START_TIMEOUT_S = 15.0

OnExpired = Callable[[], Awaitable[None]]


class Gauge(Protocol):
    def inc(self, amount: float = 1) -> None: ...
    def dec(self, amount: float = 1) -> None: ...


class Slot:
    """One admitted connection. Release is idempotent; transports call it in `finally`."""

    def __init__(self, admission: Admission, kind: str, on_expired: OnExpired | None) -> None:
        self.kind = kind
        self.released = False
        self.expired = False
        self._admission = admission
        self._on_expired = on_expired
        self._timer: asyncio.TimerHandle | None = None
        self._expiry: asyncio.Task[None] | None = None

    def session_started(self) -> None:
        """The client sent a valid session.start: the slot is kept until the connection ends."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def release(self) -> None:
        self.session_started()
        if not self.released:
            self.released = True
            self._admission._release(self)

    def _arm(self, timeout_s: float) -> None:
        self._timer = asyncio.get_running_loop().call_later(timeout_s, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self.released:
            return
        self.expired = True
        log.info("%s connection sent no session.start in time; releasing its slot", self.kind)
        self.release()
        if self._on_expired is not None:
            # Kept on the slot: the loop holds tasks only weakly.
            self._expiry = asyncio.get_running_loop().create_task(self._on_expired())


class Admission:
    def __init__(
        self,
        max_sessions: int,
        *,
        start_timeout_s: float = SESSION_START_TIMEOUT_S,
        gauge: Gauge | None = None,
    ) -> None:
        if max_sessions < 1 or start_timeout_s <= 0:
            raise ValueError("max_sessions must be at least 1 and start_timeout_s positive")
        self.max_sessions = max_sessions
        self.start_timeout_s = start_timeout_s
        self.by_kind: Counter[str] = Counter()
        self._gauge = gauge

    @property
    def active(self) -> int:
        return sum(self.by_kind.values())

    def admit(self, kind: str, *, on_expired: OnExpired | None = None) -> Slot | None:
        """A slot, or None when the server is full. Synchronous, so two connections arriving
        together cannot both take the last slot. Must be called on the running loop."""
        if self.active >= self.max_sessions:
            return None
        slot = Slot(self, kind, on_expired)
        self.by_kind[kind] += 1
        if self._gauge is not None:
            self._gauge.inc()
        slot._arm(self.start_timeout_s)
        return slot

    def _release(self, slot: Slot) -> None:
        self.by_kind[slot.kind] -= 1
        if self._gauge is not None:
            self._gauge.dec()

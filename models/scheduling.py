"""Who goes first on a busy engine.

Two cores serve every session, so when two sessions want the same engine the order matters more
than raw speed: a student waiting in silence for the first words of a reply must come before the
rest of another student's reply, whose audio is already playing and has seconds of slack.

The pipeline states how urgent its work is by entering a `work_scope` around a turn; the engine
adapters' workers read it when a job is submitted, and read it again before every step, so a
speculative reply that gets committed, or a reply whose first audio is out, changes place in the
queue while it runs. Engine interfaces stay unchanged: a backend that ignores this still works.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import os
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field


class Urgency(enum.IntEnum):
    NOW = 0  # a student is waiting in silence for this (a committed turn's first audio)
    SPECULATIVE = 1  # started in a pause; needed at once if the pause becomes the end of the turn
    AHEAD = 2  # the rest of a reply: earlier audio is still playing, so it has slack
    OPTIONAL = 3  # nice to have (a partial transcript); may wait behind everything else


_sequence = itertools.count()


@dataclass(slots=True)
class Priority:
    """Mutable on purpose: the owner raises or lowers it while the work is queued or running."""

    urgency: Urgency = Urgency.NOW
    since: float = field(default_factory=time.monotonic)
    order: int = field(default_factory=lambda: next(_sequence))

    def key(self) -> tuple[int, float, int]:
        return (int(self.urgency), self.since, self.order)


_current: ContextVar[Priority | None] = ContextVar("convergio_priority", default=None)


def current_priority() -> Priority:
    """The caller's priority; work submitted outside any scope is urgent, first come first
    served (tests and tools that call an engine directly)."""
    return _current.get() or Priority()


@contextlib.contextmanager
def work_scope(priority: Priority) -> Iterator[Priority]:
    token = _current.set(priority)
    try:
        yield priority
    finally:
        _current.reset(token)


class CpuArbiter:
    """Hands out the machine's cores to engine steps, most urgent first.

    Each engine has its own worker thread, so without this the operating system would share the
    cores fairly between, say, one student's urgent transcription and another student's
    third sentence. A step asks for up to `want` cores and waits until the most urgent waiting
    step is itself and at least one core is free; it gets every free core up to `want`, and the
    adapter runs that step with that many threads. Strict priority, no overtaking: a less urgent
    step never takes a core an earlier, more urgent one is waiting for.

    Steps cannot be preempted (a sentence of speech is one model call), so work with slack
    (`Urgency.AHEAD` and below) never holds more than `cores - 1` cores: a student who stops
    talking always finds a core free, instead of waiting for another student's sentence. And
    while urgent work runs, work with slack starts no new step until it has waited
    `background_patience_s`, so the urgent step usually gets every core; the patience bounds how
    long a reply that is already playing can be held up.
    """

    def __init__(self, cores: int, *, background_patience_s: float = 0.3) -> None:
        if cores < 1:
            raise ValueError("need at least one core")
        self.cores = cores
        self._free = cores
        self.background_cap = max(1, cores - 1)
        self.background_patience_s = background_patience_s
        self._background = 0  # cores held by work with slack
        self._waiting: list[tuple[Priority, int]] = []
        self._changed = threading.Condition()
        # Seconds steps waited for a core and ran, by urgency; exported by /metrics.
        self.waited_s: dict[str, float] = {u.name.lower(): 0.0 for u in Urgency}
        self.held_s: dict[str, float] = {u.name.lower(): 0.0 for u in Urgency}

    @contextlib.contextmanager
    def hold(self, priority: Priority, want: int = 1) -> Iterator[int]:
        asked = time.monotonic()
        background = priority.urgency >= Urgency.AHEAD
        granted = self._acquire(priority, max(1, min(want, self.cores)), background)
        started = time.monotonic()
        try:
            yield granted
        finally:
            ended = time.monotonic()
            with self._changed:
                self._free += granted
                if background:
                    self._background -= granted
                self._changed.notify_all()
                name = Urgency(priority.urgency).name.lower()
                self.waited_s[name] += started - asked
                self.held_s[name] += (ended - started) * granted

    def _acquire(self, priority: Priority, want: int, background: bool) -> int:
        waiter = (priority, next(_sequence))  # one entry per request, even with a shared priority
        patient_until = time.monotonic() + self.background_patience_s
        with self._changed:
            self._waiting.append(waiter)
            try:
                # Priorities change while waiting (a speculation gets committed), so the head of
                # the line is recomputed on every wake-up; the timeout bounds a missed notify.
                while not (
                    self._available(background) > 0
                    and self._head() is waiter
                    and not (background and self._urgent_running() and time.monotonic() < patient_until)
                ):
                    self._changed.wait(0.02 if background else 0.05)
            finally:
                self._waiting.remove(waiter)
            granted = min(want, self._available(background))
            self._free -= granted
            if background:
                self._background += granted
            self._changed.notify_all()
            return granted

    def _urgent_running(self) -> bool:
        return self.cores - self._free - self._background > 0

    def _available(self, background: bool) -> int:
        if background:
            return min(self._free, self.background_cap - self._background)
        return self._free

    def _head(self) -> tuple[Priority, int]:
        return min(self._waiting, key=lambda w: (w[0].key(), w[1]))


def _default_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


CPU = CpuArbiter(_default_cores())

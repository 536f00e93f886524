"""Turn state, its only home: the turn being heard, the attempts at answering it, and what the
student actually heard of each answer.

A turn may see several attempts: one started speculatively in a pause and thrown away when the
student goes on, then the one the end of the turn commits. Stages read and change attempts only
through the methods here, and every change that others must react to is broadcast as a frame.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from models.base import CallControl
from models.scheduling import Priority, Urgency
from pipelines.control import AttemptDiscarded, AttemptEnded, AttemptStopped, Commit, GiveUp
from pipelines.frames import (
    BudgetStage,
    Frame,
    Interrupted,
    InterruptReason,
    ReplyAudioDone,
    SafetyFlag,
    TurnStatus,
)

# A student who starts talking again within this long of the end of a turn, before hearing any
# of the reply, was only pausing: the turn continues.
CONTINUATION_GAP_MS = 3000


@dataclass(slots=True, eq=False)
class Listening:
    """The turn whose speech is being heard."""

    id: str
    latest_partial: str = ""
    attempts: int = 0


@dataclass(slots=True, eq=False)
class SpokenPiece:
    text: str
    synthesized_ms: int = 0
    sent_ms: int = 0


@dataclass(slots=True, eq=False)
class Carry:
    """The last committed turn's audio, kept until its reply is heard."""

    listening: Listening
    audio: bytes
    first_frame: int
    end_frame: int


@dataclass(eq=False)
class Attempt:
    """One try at answering a turn."""

    turn_id: str
    number: int
    listening: Listening | None = None
    replay: str | None = None  # "repeat that": speak this instead of asking the model
    committed: bool = False
    discarded: bool = False
    stopped: bool = False  # no more output of it may reach the student
    ended: bool = False
    gave_up: BudgetStage | None = None  # a stage stalled: only the apology is left to play
    failed: bool = False  # an engine failed mid-reply: only the apology is left to play
    user_text: str = ""
    generated: str = ""
    pieces: list[SpokenPiece] = field(default_factory=list)
    reply_started: bool = False
    audio_started: bool = False
    answer_ready: bool = False  # the answer's first audio exists: a filler gives way
    shorten: bool = False
    interrupt_reason: InterruptReason | None = None
    safety: list[SafetyFlag] = field(default_factory=list)  # what the safety layer did (no text)
    # How urgent its engine work is (models.scheduling): speculative until committed, then urgent
    # until its first audio; the rest of the reply runs behind other students' first words.
    priority: Priority = field(default_factory=lambda: Priority(Urgency.SPECULATIVE))
    llm_priority: Priority | None = None
    cancel: threading.Event = field(default_factory=threading.Event)  # engines stop between steps
    calls: dict[str, CallControl] = field(default_factory=dict)
    tasks: set[asyncio.Task[object]] = field(default_factory=set)
    halted: asyncio.Event = field(default_factory=asyncio.Event)
    ending: asyncio.Task[None] | None = None  # winds the attempt down once it has ended
    # Client playback model, kept by the playout stage.
    play_end: float = 0.0
    gaps_ms: int = 0

    @property
    def live(self) -> bool:
        return not (self.discarded or self.stopped or self.ended)

    def call(self, kind: str) -> CallControl:
        """The handle a budget uses to move this attempt's `kind` call to a fallback engine."""
        return self.calls.setdefault(kind, CallControl())

    def track(self, task: asyncio.Task[object]) -> asyncio.Task[object]:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def halt_work(self) -> None:
        self.cancel.set()
        for task in list(self.tasks):
            if task is not asyncio.current_task():
                task.cancel()

    def heard_text(self, now: float) -> str:
        """Words the student was sent (audio still queued beyond the playback lead is excluded)."""
        remaining_unplayed = max(0.0, (self.play_end - now) * 1000)
        sent = [p.sent_ms for p in self.pieces]
        for i in range(len(sent) - 1, -1, -1):  # take the not-yet-played audio off the end
            take = min(sent[i], remaining_unplayed)
            sent[i] -= int(take)
            remaining_unplayed -= take
        words: list[str] = []
        for piece, sent_ms in zip(self.pieces, sent, strict=True):
            if sent_ms <= 0:
                break
            piece_words = piece.text.split()
            if piece.synthesized_ms and sent_ms < piece.synthesized_ms:
                fraction = sent_ms / piece.synthesized_ms
                words.extend(piece_words[: max(1, round(len(piece_words) * fraction))])
                break
            words.extend(piece_words)
        return " ".join(words)


class Turns:
    def __init__(self, broadcast: Callable[[Frame], None], clock: Callable[[], float]) -> None:
        self._broadcast = broadcast
        self._clock = clock
        self._ids = itertools.count(1)
        self.listening: Listening | None = None
        self.speculation: Attempt | None = None  # started in a pause, not yet committed
        self.active: Attempt | None = None  # committed, its reply in flight
        self.carry: Carry | None = None

    def new_turn_id(self) -> str:
        return f"turn-{next(self._ids)}"

    def new_listening(self) -> Listening:
        return Listening(self.new_turn_id())

    def new_attempt(self, listening: Listening | None = None, *, turn_id: str = "", replay: str | None = None) -> Attempt:
        if listening is not None:
            listening.attempts += 1
            return Attempt(listening.id, listening.attempts, listening=listening)
        return Attempt(turn_id or self.new_turn_id(), 1, replay=replay)

    # ---------------------------------------------------------------------------- lifecycle

    def commit(self, attempt: Attempt) -> None:
        if self.speculation is attempt:
            self.speculation = None
        self.active = attempt
        attempt.committed = True
        for priority in (attempt.priority, attempt.llm_priority):
            if priority is not None and priority.urgency is Urgency.SPECULATIVE:
                priority.urgency = Urgency.NOW
        self._broadcast(Commit(attempt))

    def discard(self, attempt: Attempt | None) -> None:
        """Never shown as a turn, never remembered; what it consumed is metered as speculative."""
        if attempt is None or not attempt.live:
            return
        attempt.discarded = True
        attempt.halted.set()
        attempt.halt_work()
        if self.speculation is attempt:
            self.speculation = None
        if self.active is attempt:
            self.active = None
        self._broadcast(AttemptDiscarded(attempt))

    def drop_speculation(self) -> None:
        self.discard(self.speculation)

    def stop(self, attempt: Attempt | None, reason: InterruptReason) -> asyncio.Task[None] | None:
        """Silence an attempt now: nothing more of it reaches the student. Returns the task that
        ends it once its work has wound down (so its usage is exact)."""
        if attempt is None or not attempt.live:
            return None
        attempt.interrupt_reason = reason
        heard = attempt.heard_text(self._clock())
        attempt.stopped = True
        attempt.halted.set()
        attempt.halt_work()
        self._broadcast(AttemptStopped(attempt))
        if attempt.reply_started and attempt.committed:
            self._broadcast(Interrupted(attempt.turn_id, reason, heard))
        status = TurnStatus.CANCELLED if reason is InterruptReason.CANCEL else TurnStatus.INTERRUPTED
        return self._end(attempt, status, heard)

    def give_up(self, attempt: Attempt, stage: BudgetStage) -> None:
        """A stage stalled: stop the answer's work; the playout stage plays the apology."""
        if not attempt.live or attempt.gave_up:
            return
        attempt.gave_up = stage
        attempt.halt_work()
        self._broadcast(GiveUp(attempt, stage))

    def complete(self, attempt: Attempt, status: TurnStatus) -> asyncio.Task[None] | None:
        """Everything of the attempt has been heard (or there was nothing to say)."""
        if not attempt.live:
            return None
        if status is TurnStatus.COMPLETED and attempt.shorten:
            heard = " ".join(p.text for p in attempt.pieces)  # generation was cut where speech ended
        elif status is TurnStatus.COMPLETED:
            # Remembered verbatim: the next prompt then extends the one the model has cached.
            heard = attempt.generated.strip()
        elif status is TurnStatus.NO_SPEECH:
            heard = ""
        else:
            heard = attempt.heard_text(self._clock())
        return self._end(attempt, status, heard)

    def _end(self, attempt: Attempt, status: TurnStatus, heard: str) -> asyncio.Task[None]:
        attempt.ended = True
        if self.active is attempt:
            self.active = None

        async def wind_down() -> None:
            pending = [t for t in attempt.tasks if t is not asyncio.current_task()]
            await asyncio.gather(*pending, return_exceptions=True)
            if attempt.audio_started:
                self._broadcast(ReplyAudioDone(attempt.turn_id, sum(p.sent_ms for p in attempt.pieces)))
            self._broadcast(AttemptEnded(attempt, status, heard))

        attempt.ending = asyncio.get_running_loop().create_task(wind_down())
        return attempt.ending

    # ------------------------------------------------------------------------- continuation

    def continue_last(self, first_frame: int, frame_ms: int) -> Carry | None:
        """Speech that starts before the last turn's reply was heard continues that turn: the
        student only paused (a learner thinking aloud), so no half-question is answered."""
        carry, self.carry = self.carry, None
        active = self.active
        if carry is None or active is None or active.audio_started or active.turn_id != carry.listening.id:
            return None
        gap_ms = (first_frame - carry.end_frame) * frame_ms
        if not 0 <= gap_ms <= CONTINUATION_GAP_MS:
            return None
        if active.reply_started:  # its text may have been shown, though none of it was heard
            self._broadcast(Interrupted(active.turn_id, InterruptReason.STUDENT_CONTINUED, ""))
        self.discard(active)
        return carry

"""Budget watch: every stage's deadline is a timer, and a miss is decided in one place.

A committed attempt arms a timer for each budgeted stage as soon as the stage's start mark is
known; the stage's end mark disarms it. When a timer fires, `_missed` records the miss and takes
the declared action at once: a filler, the latest partial transcript, a shortened answer, or the
next engine of a fallback chain. A stage that reaches the stall limit ends the turn with an
apology instead of leaving the student in silence, unless the reply has stopped waiting for it
(a model set aside at the plan's deadline while the vetted lines are said). A stage that was
already over budget when its marks became known (both before the commit, or endpointing itself) is recorded with action none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pipelines.budgets import ENGINE_OF_STAGE, STAGE_MARKS, BudgetPolicy
from pipelines.control import (
    AttemptDiscarded,
    AttemptEnded,
    Commit,
    Mark,
    ModelSetAside,
    PlayFiller,
    UsePartialTranscript,
)
from pipelines.frames import BudgetAction, BudgetMiss, BudgetStage, SystemFrame
from pipelines.processor import Stage
from pipelines.turn import Attempt, Turns

log = logging.getLogger(__name__)

# The stall limit applies to the stages a reply waits on before its first audio.
STALLABLE = tuple(s for s in STAGE_MARKS if s not in (BudgetStage.ENDPOINTING, BudgetStage.VOICE_TO_VOICE))
MODEL_STAGES = (BudgetStage.LLM_FIRST_TOKEN, BudgetStage.FIRST_SENTENCE)


class BudgetWatch(Stage):
    name = "budget_watch"

    def __init__(self, policy: BudgetPolicy, turns: Turns, marks: Callable[[Attempt], dict[str, float]], clock: Callable[[], float]) -> None:
        super().__init__()
        self._policy = policy
        self._turns = turns
        self._marks = marks  # read from the metering stage, which records them
        self._clock = clock
        self._timers: dict[Attempt, dict[tuple[BudgetStage, bool], asyncio.TimerHandle]] = {}
        self._missed_stages: dict[Attempt, set[BudgetStage]] = {}
        self._set_aside: set[Attempt] = set()  # replies that stopped waiting for their model

    def on_system(self, frame: SystemFrame) -> None:
        if isinstance(frame, Commit):
            self._timers[frame.attempt] = {}
            self._missed_stages[frame.attempt] = set()
            for stage in STAGE_MARKS:
                self._track(frame.attempt, stage)
        elif isinstance(frame, Mark) and frame.attempt in self._timers:
            for stage, (start, end) in STAGE_MARKS.items():
                if frame.name in (start, end):
                    self._track(frame.attempt, stage)
        elif isinstance(frame, ModelSetAside):
            # Its first token may never come (the draft was stopped) while the vetted lines play
            # for longer than the stall limit: that is not a stall, and no apology cuts them off.
            # Kept for a speculative reply too, whose deadline can pass before its commit.
            self._set_aside.add(frame.attempt)
            timers = self._timers.get(frame.attempt, {})
            for stage in MODEL_STAGES:
                if (timer := timers.pop((stage, True), None)) is not None:
                    timer.cancel()
        elif isinstance(frame, AttemptEnded | AttemptDiscarded):
            for timer in self._timers.pop(frame.attempt, {}).values():
                timer.cancel()
            self._missed_stages.pop(frame.attempt, None)
            self._set_aside.discard(frame.attempt)

    def _track(self, attempt: Attempt, stage: BudgetStage) -> None:
        """Arm, disarm or settle the stage's timers from the marks known now."""
        start, end = STAGE_MARKS[stage]
        marks = self._marks(attempt)
        timers = self._timers[attempt]
        budget = self._policy.stages().get(stage)
        if start not in marks:
            return
        if end in marks:
            for stall in (False, True):
                if (timer := timers.pop((stage, stall), None)) is not None:
                    timer.cancel()
            elapsed_ms = round((marks[end] - marks[start]) * 1000)
            if budget is not None and elapsed_ms > budget.ms:
                self._missed(attempt, stage, elapsed_ms, act=False)
            return
        loop = asyncio.get_running_loop()
        now = self._clock()
        if budget is not None and (stage, False) not in timers:
            due = marks[start] + budget.ms / 1000 - now
            timers[(stage, False)] = loop.call_later(max(0.0, due), self._fired, attempt, stage)
        awaited = stage not in MODEL_STAGES or attempt not in self._set_aside
        if stage in STALLABLE and awaited and (stage, True) not in timers:
            due = marks[start] + self._policy.stall_ms / 1000 - now
            timers[(stage, True)] = loop.call_later(max(0.0, due), self._stalled, attempt, stage)

    def _fired(self, attempt: Attempt, stage: BudgetStage) -> None:
        start, _ = STAGE_MARKS[stage]
        elapsed_ms = round((self._clock() - self._marks(attempt)[start]) * 1000)
        self._missed(attempt, stage, elapsed_ms, act=True)

    def _missed(self, attempt: Attempt, stage: BudgetStage, elapsed_ms: int, *, act: bool) -> None:
        """The one decision point for a missed deadline."""
        missed = self._missed_stages.get(attempt)
        budget = self._policy.stages().get(stage)
        if missed is None or stage in missed or budget is None or not attempt.live:
            return
        missed.add(stage)
        action = budget.action if act else BudgetAction.NONE
        if action is BudgetAction.FILLER and attempt.audio_started:
            action = BudgetAction.NONE  # the student is already hearing something
        self.push(BudgetMiss(attempt.turn_id, stage, budget.ms, elapsed_ms, action))
        if action is BudgetAction.FILLER:
            self.push(PlayFiller(attempt))
        elif action is BudgetAction.PARTIAL_TRANSCRIPT:
            self.push(UsePartialTranscript(attempt))
        elif action is BudgetAction.SHORTEN:
            attempt.shorten = True
        elif action is BudgetAction.FALLBACK:
            attempt.call(ENGINE_OF_STAGE[stage]).switch.set()

    def _stalled(self, attempt: Attempt, stage: BudgetStage) -> None:
        if attempt.live:
            log.warning("turn %s stalled in %s after %d ms; giving up", attempt.turn_id, stage.value, self._policy.stall_ms)
            self._turns.give_up(attempt, stage)

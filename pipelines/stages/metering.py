"""Metering: the only place usage units and latency marks are recorded.

Stages report what they used (`Usage`, as increments) and when things happened (`Mark`); this stage
keeps the running totals per (turn, attempt, kind, provider, model), publishes each change as a
`UsageMetric` event, and when an attempt ends publishes its `LatencyMetric`s and the `TurnDone`
that the protocol, /metrics and the benchmark read. Work thrown away (a speculative attempt, a
prefill) stays metered, apart from the answer.
"""

from __future__ import annotations

import copy
import itertools
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from pipelines.budgets import STAGE_MARKS
from pipelines.control import AttemptDiscarded, AttemptEnded, Mark, Out, Usage
from pipelines.frames import (
    Allowance,
    BudgetMiss,
    LatencyMetric,
    SystemFrame,
    TurnDone,
    TurnUsage,
    UsageKind,
    UsageMetric,
    UsageUpdated,
)
from pipelines.processor import Stage
from pipelines.turn import Attempt

# Turn stages in order, each from the previous mark (what turn.done reports).
LATENCY_ORDER = ("speech_end", "end_of_turn", "transcript", "llm_first_token", "first_sentence", "tts_first_audio", "first_audio_sent")
LATENCY_STAGES = ("endpointing", "stt", "llm_first_token", "first_sentence", "tts_first_audio", "send")
_KIND_OF_USAGE = {
    UsageKind.STT_AUDIO_MS: "stt",
    UsageKind.STT_PARTIAL_AUDIO_MS: "stt",
    UsageKind.LLM_PROMPT_TOKENS: "llm",
    UsageKind.LLM_COMPLETION_TOKENS: "llm",
    UsageKind.TTS_CHARS: "tts",
    UsageKind.TTS_AUDIO_MS: "tts",
}


@dataclass(slots=True)
class _TurnBook:
    """What one turn used while it was heard (partials, prefill) and by each attempt."""

    heard: TurnUsage = field(default_factory=TurnUsage)  # partial transcripts: part of the answer's cost
    speculative: TurnUsage = field(default_factory=TurnUsage)  # prefill, discarded attempts
    reported: bool = False


class MeteringStage(Stage):
    name = "metering"

    def __init__(
        self, session_id: str, *, allowances: Callable[[], tuple[Allowance, ...]] | None = None
    ) -> None:
        super().__init__()
        self.session_id = session_id
        self._allowances = allowances  # what is left of the caps that apply, for usage.updated
        self.session_total = TurnUsage()
        self._marks: dict[Attempt, dict[str, float]] = {}
        self._usage: dict[Attempt, TurnUsage] = {}
        self._misses: dict[str, list[BudgetMiss]] = {}
        self._turns: dict[str, _TurnBook] = {}
        self._totals: dict[tuple[str, int, UsageKind, str, str], int] = {}
        self._reported: weakref.WeakSet[Attempt] = weakref.WeakSet()

    def marks(self, attempt: Attempt) -> dict[str, float]:
        return self._marks.setdefault(attempt, {})

    def on_system(self, frame: SystemFrame) -> None:
        if isinstance(frame, Mark):
            self.marks(frame.attempt).setdefault(frame.name, frame.at)
        elif isinstance(frame, Usage):
            self._record(frame)
        elif isinstance(frame, BudgetMiss):
            self._misses.setdefault(frame.turn_id, []).append(frame)
        elif isinstance(frame, AttemptDiscarded):
            book = self._book(frame.attempt.turn_id)
            book.speculative.add(self._usage.pop(frame.attempt, TurnUsage()))
            self._marks.pop(frame.attempt, None)
            if frame.attempt.committed:  # its misses belonged to an answer that never was
                self._misses.pop(frame.attempt.turn_id, None)
            # What it used so far is now known to be thrown away: say so for the same keys.
            for (turn_id, number, kind, provider, model), total in self._totals.items():
                if turn_id == frame.attempt.turn_id and number == frame.attempt.number:
                    self.push(UsageMetric(self.session_id, turn_id, number, kind, provider, model, total, True))
        elif isinstance(frame, AttemptEnded):
            self._report(frame)

    def _book(self, turn_id: str) -> _TurnBook:
        return self._turns.setdefault(turn_id, _TurnBook())

    def _record(self, usage: Usage) -> None:
        if usage.amount <= 0:
            return
        attempt = usage.attempt
        book = self._book(usage.turn_id)
        if attempt in self._reported or (attempt is None and book.reported) or (
            attempt is not None and attempt.discarded and book.reported
        ):
            # It landed after its turn was reported (a transcription nobody waited for): the
            # session still paid for it.
            late = TurnUsage()
            _add(late, usage)
            self.session_total.add(TurnUsage(speculative=late))
            speculative = True
        elif attempt is None:
            speculative = usage.speculative
            _add(book.speculative if speculative else book.heard, usage)
        elif attempt.discarded:
            speculative = True
            _add(book.speculative, usage)
        else:
            speculative = usage.speculative
            _add(self._usage.setdefault(attempt, TurnUsage()), usage)
        number = 0 if attempt is None else attempt.number
        key = (usage.turn_id, number, usage.kind, usage.engine.provider, usage.engine.model)
        self._totals[key] = total = self._totals.get(key, 0) + usage.amount
        self.push(
            UsageMetric(
                self.session_id, usage.turn_id, number, usage.kind, usage.engine.provider, usage.engine.model,
                total, speculative,
            )
        )

    def _report(self, ended: AttemptEnded) -> None:
        attempt = ended.attempt
        book = self._book(attempt.turn_id)
        book.reported = True
        self._reported.add(attempt)
        usage = self._usage.pop(attempt, TurnUsage())
        usage.stt_partial_audio_ms += book.heard.stt_partial_audio_ms
        for kind, label in book.heard.providers.items():
            usage.providers.setdefault(kind, label)
        if book.speculative != TurnUsage():
            usage.speculative = book.speculative
        self.session_total.add(usage)
        latency = self.latency(attempt)
        for stage, ms in latency.items():
            self.push(LatencyMetric(self.session_id, attempt.turn_id, stage.removesuffix("_ms"), ms))
        misses = tuple(self._misses.pop(attempt.turn_id, ()))
        self._marks.pop(attempt, None)
        done = TurnDone(
            attempt.turn_id, ended.status, attempt.user_text, ended.heard, latency, usage, misses,
            tuple(attempt.safety),
        )
        self.push(Out(attempt, done))
        left = self._allowances() if self._allowances is not None else ()
        self.push(UsageUpdated(copy.deepcopy(self.session_total), left))  # live figures for the client

    def latency(self, attempt: Attempt) -> dict[str, int]:
        marks = self.marks(attempt)
        latency: dict[str, int] = {}
        for stage, (start, end) in zip(LATENCY_STAGES, itertools.pairwise(LATENCY_ORDER), strict=True):
            if start in marks and end in marks:
                latency[f"{stage}_ms"] = max(0, round((marks[end] - marks[start]) * 1000))
        if attempt.audio_started:
            latency["reply_gaps_ms"] = attempt.gaps_ms
        if "speech_end" in marks:
            for mark, key in (("first_audio_sent", "voice_to_voice_ms"), ("answer_audio_sent", "voice_to_answer_ms")):
                if mark in marks:
                    latency[key] = round((marks[mark] - marks["speech_end"]) * 1000)
        return latency


def _add(target: TurnUsage, usage: Usage) -> None:
    setattr(target, usage.kind.value, getattr(target, usage.kind.value) + usage.amount)
    target.providers[_KIND_OF_USAGE[usage.kind]] = f"{usage.engine.provider}/{usage.engine.model}"


assert set(LATENCY_STAGES[:-1]) <= {s.value for s in STAGE_MARKS}  # the budgets and the report agree

"""Latency budgets that act while a turn runs.

Each stage of a turn has a deadline and a declared action taken the moment it is missed; the
whole turn has a voice-to-voice deadline; and every stage has a stall limit after which the turn
gives up with a spoken apology instead of leaving the student in silence.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class BudgetAction(enum.StrEnum):
    NONE = "none"  # record the miss only
    FILLER = "filler"  # speak a short pre-synthesised filler while the turn goes on
    PARTIAL_TRANSCRIPT = "partial_transcript"  # answer the latest partial instead of the final
    SHORTEN = "shorten"  # stop the answer after its first sentence
    FALLBACK = "fallback"  # taken by the engine's fallback chain (attempt timeouts); recorded here


# Which actions make sense for which stage: a filler cannot speed up endpointing, a partial
# transcript only exists before the final one.
ALLOWED_ACTIONS: dict[str, frozenset[BudgetAction]] = {
    "endpointing": frozenset({BudgetAction.NONE}),
    "stt": frozenset({BudgetAction.NONE, BudgetAction.FILLER, BudgetAction.PARTIAL_TRANSCRIPT}),
    "llm_first_token": frozenset({BudgetAction.NONE, BudgetAction.FILLER, BudgetAction.FALLBACK}),
    "first_sentence": frozenset({BudgetAction.NONE, BudgetAction.FILLER, BudgetAction.SHORTEN}),
    "tts_first_audio": frozenset({BudgetAction.NONE, BudgetAction.FILLER, BudgetAction.FALLBACK}),
    "voice_to_voice": frozenset({BudgetAction.NONE, BudgetAction.FILLER}),
}

# Each stage runs between two of the marks a turn passes (see VoicePipeline).
STAGE_MARKS: dict[str, tuple[str, str]] = {
    "endpointing": ("speech_end", "end_of_turn"),
    "stt": ("end_of_turn", "transcript"),
    "llm_first_token": ("transcript", "llm_first_token"),
    "first_sentence": ("llm_first_token", "first_sentence"),
    "tts_first_audio": ("first_sentence", "tts_first_audio"),
    "voice_to_voice": ("speech_end", "first_audio_sent"),
}


@dataclass(frozen=True, slots=True)
class StageBudget:
    ms: int
    action: BudgetAction = BudgetAction.NONE

    def __post_init__(self) -> None:
        if self.ms <= 0:
            raise ValueError("a budget must be positive")


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    stages: dict[str, StageBudget] = field(
        default_factory=lambda: {
            "endpointing": StageBudget(900),
            "stt": StageBudget(700, BudgetAction.PARTIAL_TRANSCRIPT),
            # One filler trigger: the silence the student actually sits through. A filler spoken
            # early for one slow stage would delay an answer that was about to be ready, since
            # the answer then waits for the filler to finish.
            "llm_first_token": StageBudget(700),
            "first_sentence": StageBudget(900, BudgetAction.SHORTEN),
            "tts_first_audio": StageBudget(600),
            "voice_to_voice": StageBudget(1500, BudgetAction.FILLER),
        }
    )
    # A stage this late is stalled: the turn ends with an apology and the session moves on.
    stall_ms: int = 8000

    def __post_init__(self) -> None:
        for stage, budget in self.stages.items():
            allowed = ALLOWED_ACTIONS.get(stage)
            if allowed is None:
                raise ValueError(f"unknown budget stage {stage!r}; known: {', '.join(ALLOWED_ACTIONS)}")
            if budget.action not in allowed:
                names = ", ".join(sorted(a.value for a in allowed))
                raise ValueError(f"action {budget.action.value!r} is not available for {stage}: {names}")


# Short on purpose (under a second): an answer that becomes ready meanwhile waits for the filler.
FILLERS = ("Hmm, let's see.", "Let me think.", "Right, let's see.")
APOLOGY = "Sorry, I'm having trouble answering right now. Could you ask me again?"

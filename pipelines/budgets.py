"""Latency budgets: a deadline per stage of a turn and the action taken the moment it is missed.

These models carry the one definition of every default; server settings nest them and sessions
override them through `with_overrides`, so every value passes the same validation.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipelines.frames import BudgetAction, BudgetStage

# Which actions make sense for which stage: a filler cannot speed up endpointing, a partial
# transcript only exists before the final one, and only engine stages can fall back.
ALLOWED_ACTIONS: dict[BudgetStage, frozenset[BudgetAction]] = {
    BudgetStage.ENDPOINTING: frozenset({BudgetAction.NONE}),
    BudgetStage.STT: frozenset(
        {BudgetAction.NONE, BudgetAction.FILLER, BudgetAction.PARTIAL_TRANSCRIPT, BudgetAction.FALLBACK}
    ),
    BudgetStage.LLM_FIRST_TOKEN: frozenset({BudgetAction.NONE, BudgetAction.FILLER, BudgetAction.FALLBACK}),
    BudgetStage.FIRST_SENTENCE: frozenset({BudgetAction.NONE, BudgetAction.FILLER, BudgetAction.SHORTEN}),
    BudgetStage.TTS_FIRST_AUDIO: frozenset({BudgetAction.NONE, BudgetAction.FILLER, BudgetAction.FALLBACK}),
    BudgetStage.VOICE_TO_VOICE: frozenset({BudgetAction.NONE, BudgetAction.FILLER}),
}

# Each stage runs between two of the marks a turn passes (recorded by the metering stage).
STAGE_MARKS: dict[BudgetStage, tuple[str, str]] = {
    BudgetStage.ENDPOINTING: ("speech_end", "end_of_turn"),
    BudgetStage.STT: ("end_of_turn", "transcript"),
    BudgetStage.LLM_FIRST_TOKEN: ("transcript", "llm_first_token"),
    BudgetStage.FIRST_SENTENCE: ("llm_first_token", "first_sentence"),
    BudgetStage.TTS_FIRST_AUDIO: ("first_sentence", "tts_first_audio"),
    # From the moment an answer is due: the end of speech, or the commit when the policy held the
    # turn for a thinking pause (a filler at once after a deliberate wait would only delay an answer
    # that is ready). The reported voice-to-voice latency always counts from the end of speech.
    BudgetStage.VOICE_TO_VOICE: ("answer_due", "first_audio_sent"),
}

# The engine whose deadline a stage is, for the `fallback` action.
ENGINE_OF_STAGE: dict[BudgetStage, str] = {
    BudgetStage.STT: "stt",
    BudgetStage.LLM_FIRST_TOKEN: "llm",
    BudgetStage.TTS_FIRST_AUDIO: "tts",
}


class StageBudget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ms: int = Field(ge=1, le=60_000)
    action: BudgetAction = BudgetAction.NONE


def _budget(ms: int, action: BudgetAction = BudgetAction.NONE) -> StageBudget:
    return StageBudget(ms=ms, action=action)


class BudgetPolicy(BaseModel):
    """Deadlines in ms, and what to do the moment one is missed. A stage set to None has none.

    Example: CONVERGIO_BUDGETS__LLM_FIRST_TOKEN__MS=500, CONVERGIO_BUDGETS__LLM_FIRST_TOKEN__ACTION=filler.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpointing: StageBudget | None = _budget(900)
    stt: StageBudget | None = _budget(700, BudgetAction.PARTIAL_TRANSCRIPT)
    # One filler trigger by default: the silence the student actually sits through. A filler
    # spoken early for one slow stage would delay an answer that was about to be ready.
    llm_first_token: StageBudget | None = _budget(700)
    first_sentence: StageBudget | None = _budget(900, BudgetAction.SHORTEN)
    tts_first_audio: StageBudget | None = _budget(600)
    voice_to_voice: StageBudget | None = _budget(1500, BudgetAction.FILLER)
    # A stage this late is stalled: the turn ends with an apology and the session moves on.
    stall_ms: int = Field(8000, ge=100, le=600_000)

    @model_validator(mode="before")
    @classmethod
    def _stage_defaults(cls, data: Any) -> Any:
        """A stage given in part (only its action, say) keeps its default for the rest."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for stage in BudgetStage:
            default = cls.model_fields[stage.value].default
            if isinstance(given := data.get(stage.value), dict) and default is not None:
                data[stage.value] = {**default.model_dump(), **given}
        return data

    @model_validator(mode="after")
    def _actions_fit_stages(self) -> BudgetPolicy:
        for stage, budget in self.stages().items():
            if budget.action not in ALLOWED_ACTIONS[stage]:
                names = ", ".join(sorted(a.value for a in ALLOWED_ACTIONS[stage]))
                raise ValueError(f"action {budget.action.value!r} is not available for {stage.value}: {names}")
        return self

    def stages(self) -> dict[BudgetStage, StageBudget]:
        return {stage: budget for stage in BudgetStage if (budget := getattr(self, stage.value)) is not None}

    def with_overrides(self, overrides: dict[str, dict[str, Any]]) -> BudgetPolicy:
        """A copy with some stages changed, validated like the original (raises ValueError)."""
        data = self.model_dump()
        for stage, fields in overrides.items():
            current = data.get(stage) or {}
            data[stage] = {**current, **{k: v for k, v in fields.items() if v is not None}}
        return BudgetPolicy.model_validate(data)

    @classmethod
    def only(cls, stage: BudgetStage, ms: int, action: BudgetAction, *, stall_ms: int = 8000) -> BudgetPolicy:
        """One stage with a budget and nothing else (tests of a single deadline)."""
        stages: dict[str, Any] = {s.value: None for s in BudgetStage}
        stages[stage.value] = StageBudget(ms=ms, action=action)
        return cls(**stages, stall_ms=stall_ms)


# Short on purpose (under a second): an answer that becomes ready meanwhile waits for the filler.
FILLERS = ("Hmm, let's see.", "Let me think.", "Right, let's see.")
APOLOGY = "Sorry, I'm having trouble answering right now. Could you ask me again?"
# Said (from audio made at start-up) and shown when the session's usage cap stops a turn.
# Said at any cap (the session's, the student's, the classroom's or a key's): which one is in the
# client's usage.cap_reached event.
CAP_NOTICE = "We've reached the usage limit, so I can't answer any more right now. Please ask your teacher."

"""What the pipeline tells the client. Which of them are system frames decides whether they can
overtake reply audio on the way out."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.frames.base import DataFrame, SystemFrame
from pipelines.frames.values import (
    BudgetAction,
    BudgetStage,
    ErrorCode,
    InterruptReason,
    SafetyAction,
    SafetyCategory,
    SafetyDirection,
    TranscriptSource,
    TurnStatus,
    UsageKind,
)


@dataclass(frozen=True, slots=True)
class SpeechStarted(SystemFrame):
    turn_id: str
    stream_ms: int  # position in the session's input audio stream


@dataclass(frozen=True, slots=True)
class SpeechStopped(SystemFrame):
    turn_id: str
    stream_ms: int


@dataclass(frozen=True, slots=True)
class TurnThinking(SystemFrame):
    """The student paused mid-thought: the tutor waits in silence (the client may show it)."""

    turn_id: str
    patience_ms: int  # how long the tutor waits, counted from the end of speech


@dataclass(frozen=True, slots=True)
class TurnPrompt(SystemFrame):
    """The patience ran out: a gentle prompt, and the tutor goes on listening."""

    turn_id: str
    text: str


@dataclass(frozen=True, slots=True)
class TranscriptPartial(SystemFrame):
    turn_id: str
    text: str


@dataclass(frozen=True, slots=True)
class TranscriptFinal(DataFrame):
    turn_id: str
    text: str
    source: TranscriptSource


@dataclass(frozen=True, slots=True)
class ReplyTextDelta(DataFrame):
    turn_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class ReplySentence(DataFrame):
    """A sentence of the reply whose audio starts now: what captions and screen readers announce."""

    turn_id: str
    text: str


@dataclass(frozen=True, slots=True)
class ReplyAudioStarted(DataFrame):
    turn_id: str
    sample_rate: int


@dataclass(frozen=True, slots=True)
class ReplyAudio(DataFrame):
    turn_id: str
    pcm16: bytes
    sample_rate: int


@dataclass(frozen=True, slots=True)
class ReplyAudioDone(SystemFrame):
    turn_id: str
    audio_ms: int


@dataclass(frozen=True, slots=True)
class Interrupted(SystemFrame):
    turn_id: str
    reason: InterruptReason
    heard_text: str


@dataclass(slots=True)
class TurnUsage:
    """Exact integer units consumed by one turn, per engine."""

    stt_audio_ms: int = 0
    stt_partial_audio_ms: int = 0
    llm_prompt_tokens: int = 0
    llm_completion_tokens: int = 0
    tts_chars: int = 0
    tts_audio_ms: int = 0
    providers: dict[str, str] = field(default_factory=dict)  # kind -> "provider/model"
    # Work started for this turn and thrown away because the student kept talking: still paid
    # for, so still metered, but kept apart from the answer that was given.
    speculative: TurnUsage | None = None

    def add(self, other: TurnUsage) -> None:
        for kind in UsageKind:
            setattr(self, kind.value, getattr(self, kind.value) + getattr(other, kind.value))
        self.providers.update(other.providers)
        if other.speculative is not None:
            if self.speculative is None:
                self.speculative = TurnUsage()
            self.speculative.add(other.speculative)


@dataclass(frozen=True, slots=True)
class CapReached(SystemFrame):
    """A call was not made because a cap for that engine kind is reached (sent once per scope,
    kind and unit). `used` is what the scope had used (calls in flight included) when the call
    was refused: the session's own use for a session cap, the student's, classroom's or key's
    in the period for theirs."""

    kind: str  # "stt" | "llm" | "tts"
    unit: str  # "audio_ms" | "tokens" | "chars" | "minor_units" (a cost cap)
    limit: int
    used: int
    scope: str = "session"  # "session" | "student" | "classroom" | "key"
    period: str = "session"  # "session" | "day" | "month" | "total"
    currency: str | None = None  # a cost cap's currency


@dataclass(frozen=True, slots=True)
class Allowance:
    """One cap that applies to the session and what is left of it (calls in flight not counted)."""

    scope: str  # "session" | "student" | "classroom" | "key"
    kind: str | None  # "stt" | "llm" | "tts"; None for a cost cap, which covers every kind
    unit: str  # "audio_ms" | "tokens" | "chars" | "minor_units"
    limit: int
    used: int
    period: str  # "session" | "day" | "month" | "total"
    currency: str | None = None

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


@dataclass(frozen=True, slots=True)
class UsageUpdated(SystemFrame):
    """The session's running usage, after each turn: live figures for the client, with what is
    left of every cap that applies."""

    usage: TurnUsage
    allowances: tuple[Allowance, ...] = ()


@dataclass(frozen=True, slots=True)
class BudgetMiss(SystemFrame):
    """A stage overran its deadline; `action` is what the pipeline did about it at that moment."""

    turn_id: str
    stage: BudgetStage
    budget_ms: int
    elapsed_ms: int
    action: BudgetAction


@dataclass(frozen=True, slots=True)
class SafetyFlag(DataFrame):
    """A safety event for the teacher and /metrics: category and action, never the text."""

    turn_id: str
    category: SafetyCategory
    action: SafetyAction
    direction: SafetyDirection


@dataclass(frozen=True, slots=True)
class TurnDone(DataFrame):
    turn_id: str
    status: TurnStatus
    user_text: str
    reply_text: str  # what the student was actually sent, not what was generated
    latency_ms: dict[str, int]
    usage: TurnUsage
    budget_misses: tuple[BudgetMiss, ...] = ()
    safety: tuple[SafetyFlag, ...] = ()


@dataclass(frozen=True, slots=True)
class PipelineError(DataFrame):
    code: ErrorCode
    message: str
    turn_id: str | None = None

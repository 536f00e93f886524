"""Events the pipeline emits. Transports translate them to wire messages; tests read them directly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

TurnStatus = Literal["completed", "interrupted", "cancelled", "no_speech", "failed"]
InterruptReason = Literal["barge_in", "cancel", "text_input", "session_end", "student_continued"]


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    turn_id: str
    stream_ms: int  # position in the session's input audio stream


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    turn_id: str
    stream_ms: int


@dataclass(frozen=True, slots=True)
class TranscriptPartial:
    turn_id: str
    text: str


@dataclass(frozen=True, slots=True)
class TranscriptFinal:
    turn_id: str
    text: str
    source: Literal["speech", "text"]


@dataclass(frozen=True, slots=True)
class ReplyTextDelta:
    turn_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class ReplySentence:
    """A sentence of the reply whose audio starts now: what captions and screen readers announce."""

    turn_id: str
    text: str


@dataclass(frozen=True, slots=True)
class ReplyAudioStarted:
    turn_id: str
    sample_rate: int


@dataclass(frozen=True, slots=True)
class ReplyAudio:
    turn_id: str
    pcm16: bytes
    sample_rate: int


@dataclass(frozen=True, slots=True)
class ReplyAudioDone:
    turn_id: str
    audio_ms: int


@dataclass(frozen=True, slots=True)
class Interrupted:
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
        self.stt_audio_ms += other.stt_audio_ms
        self.stt_partial_audio_ms += other.stt_partial_audio_ms
        self.llm_prompt_tokens += other.llm_prompt_tokens
        self.llm_completion_tokens += other.llm_completion_tokens
        self.tts_chars += other.tts_chars
        self.tts_audio_ms += other.tts_audio_ms
        self.providers.update(other.providers)
        if other.speculative is not None:
            if self.speculative is None:
                self.speculative = TurnUsage()
            self.speculative.add(other.speculative)


@dataclass(frozen=True, slots=True)
class BudgetMiss:
    """A stage overran its deadline; `action` is what the pipeline did about it at that moment."""

    turn_id: str
    stage: str
    budget_ms: int
    elapsed_ms: int
    action: str


@dataclass(frozen=True, slots=True)
class TurnDone:
    turn_id: str
    status: TurnStatus
    user_text: str
    reply_text: str  # what the student was actually sent, not what was generated
    latency_ms: dict[str, int]
    usage: TurnUsage
    budget_misses: tuple[BudgetMiss, ...] = ()


@dataclass(frozen=True, slots=True)
class PipelineError:
    code: str
    message: str
    turn_id: str | None = None


PipelineEvent = (
    SpeechStarted
    | SpeechStopped
    | TranscriptPartial
    | TranscriptFinal
    | ReplyTextDelta
    | ReplySentence
    | ReplyAudioStarted
    | ReplyAudio
    | ReplyAudioDone
    | Interrupted
    | BudgetMiss
    | TurnDone
    | PipelineError
)

"""Every frame the pipeline passes, and the one home of the fixed-value lists the protocol uses.

Two kinds of frame move between stages (see `pipelines.processor`):
- a `SystemFrame` is delivered at once to every stage, never queued: barge-in, the end of a turn,
  marks, usage and budget actions must not wait behind audio;
- a `DataFrame` is queued and handled in order by one stage after another.

The output events below are what a transport turns into wire messages; which of them are system
frames decides whether they can overtake reply audio on the way out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Frame:
    """Base of every frame."""

    __slots__ = ()


class SystemFrame(Frame):
    __slots__ = ()


class DataFrame(Frame):
    __slots__ = ()


# ----------------------------------------------------------------------- fixed-value lists


class TurnStatus(enum.StrEnum):
    COMPLETED = "completed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"
    NO_SPEECH = "no_speech"
    FAILED = "failed"


class InterruptReason(enum.StrEnum):
    BARGE_IN = "barge_in"
    CANCEL = "cancel"
    TEXT_INPUT = "text_input"
    SESSION_END = "session_end"
    STUDENT_CONTINUED = "student_continued"


class TranscriptSource(enum.StrEnum):
    SPEECH = "speech"
    TEXT = "text"


class BudgetStage(enum.StrEnum):
    ENDPOINTING = "endpointing"
    STT = "stt"
    LLM_FIRST_TOKEN = "llm_first_token"
    FIRST_SENTENCE = "first_sentence"
    TTS_FIRST_AUDIO = "tts_first_audio"
    VOICE_TO_VOICE = "voice_to_voice"


class BudgetAction(enum.StrEnum):
    NONE = "none"  # record the miss only
    FILLER = "filler"  # speak a short pre-synthesised filler while the turn goes on
    PARTIAL_TRANSCRIPT = "partial_transcript"  # answer the latest partial instead of the final
    SHORTEN = "shorten"  # stop the answer after one more sentence
    FALLBACK = "fallback"  # abandon the engine serving the stage and ask the next in its chain


class UsageKind(enum.StrEnum):
    STT_AUDIO_MS = "stt_audio_ms"
    STT_PARTIAL_AUDIO_MS = "stt_partial_audio_ms"
    LLM_PROMPT_TOKENS = "llm_prompt_tokens"
    LLM_COMPLETION_TOKENS = "llm_completion_tokens"
    TTS_CHARS = "tts_chars"
    TTS_AUDIO_MS = "tts_audio_ms"


class SafetyCategory(enum.StrEnum):
    """What the safety layer (`pipelines.safety`) recognised in the student's words or the tutor's
    (prompt_leak only ever in the tutor's)."""

    SELF_HARM = "self_harm"  # self-harm or distress
    VIOLENCE = "violence"  # violence or weapons
    SEXUAL = "sexual"
    PERSONAL_DATA = "personal_data"
    CHEATING = "cheating"
    ROLE_CHANGE = "role_change"  # attempts to change the tutor's role or read its instructions
    PROMPT_LEAK = "prompt_leak"
    FALSE_ACTION = "false_action"  # a claim of an action the tutor cannot take


class SafetyAction(enum.StrEnum):
    REDIRECT = "redirect"  # the persona's declared line is spoken; the model is not asked
    GUIDE = "guide"  # the model is asked with a steering note in its system context
    REPLACE = "replace"  # a sentence of the reply was replaced by a safe line before anyone saw it


class SafetyDirection(enum.StrEnum):
    INPUT = "input"
    OUTPUT = "output"


class ErrorCode(enum.StrEnum):
    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_MESSAGE_TYPE = "unknown_message_type"
    UNSUPPORTED_PROTOCOL_VERSION = "unsupported_protocol_version"
    UNSUPPORTED_AUDIO_FORMAT = "unsupported_audio_format"
    INVALID_AUDIO_FRAME = "invalid_audio_frame"
    SESSION_NOT_STARTED = "session_not_started"
    SESSION_ALREADY_STARTED = "session_already_started"
    SESSION_START_TIMEOUT = "session_start_timeout"
    UNKNOWN_PERSONA = "unknown_persona"
    NOTHING_TO_REPEAT = "nothing_to_repeat"
    TEXT_TOO_LONG = "text_too_long"
    SERVER_NOT_READY = "server_not_ready"
    SERVER_BUSY = "server_busy"
    ENGINE_ERROR = "engine_error"
    ENGINE_TIMEOUT = "engine_timeout"
    INTERNAL_ERROR = "internal_error"


# ------------------------------------------------------------------------------ input frames


@dataclass(frozen=True, slots=True)
class AudioIn(DataFrame):
    """16 kHz mono PCM16 from the student's microphone, stamped with its arrival time."""

    pcm16: bytes
    at: float


@dataclass(frozen=True, slots=True)
class TextIn(DataFrame):
    """A typed message: the accessibility path, and a turn of its own."""

    turn_id: str
    text: str


@dataclass(frozen=True, slots=True)
class RepeatLast(DataFrame):
    """Say the last answer again, as it was heard, without asking the model."""

    turn_id: str
    text: str


@dataclass(frozen=True, slots=True)
class Interrupt(SystemFrame):
    """Stop the reply now: the student spoke, typed, pressed stop or left."""

    reason: InterruptReason


@dataclass(frozen=True, slots=True)
class UpdateSettings(SystemFrame):
    voice_rate: float | None = None


# ----------------------------------------------------------------------------- output events


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


# ----------------------------------------------------------------------------- metric events


@dataclass(frozen=True, slots=True)
class UsageMetric(SystemFrame):
    """Units of one kind used by one attempt at a turn, keyed by (session, turn, attempt, kind,
    provider, model). `amount` is the running total for that key, so replaying a record never
    counts twice. Attempt 0 is work for the turn while it was still being heard (partial
    transcripts, prefill); a `speculative` attempt was thrown away."""

    session_id: str
    turn_id: str
    attempt: int
    kind: UsageKind
    provider: str
    model: str
    amount: int
    speculative: bool


@dataclass(frozen=True, slots=True)
class LatencyMetric(SystemFrame):
    """One stage of one finished turn (see `pipelines.budgets.STAGE_MARKS`), in ms."""

    session_id: str
    turn_id: str
    stage: str
    ms: int


OUTPUT_EVENTS: tuple[type[Frame], ...] = (
    SpeechStarted,
    SpeechStopped,
    TurnThinking,
    TurnPrompt,
    TranscriptPartial,
    TranscriptFinal,
    ReplyTextDelta,
    ReplySentence,
    ReplyAudioStarted,
    ReplyAudio,
    ReplyAudioDone,
    Interrupted,
    BudgetMiss,
    SafetyFlag,
    TurnDone,
    PipelineError,
    UsageMetric,
    LatencyMetric,
)

PipelineEvent = (
    SpeechStarted
    | SpeechStopped
    | TurnThinking
    | TurnPrompt
    | TranscriptPartial
    | TranscriptFinal
    | ReplyTextDelta
    | ReplySentence
    | ReplyAudioStarted
    | ReplyAudio
    | ReplyAudioDone
    | Interrupted
    | BudgetMiss
    | SafetyFlag
    | TurnDone
    | PipelineError
    | UsageMetric
    | LatencyMetric
)

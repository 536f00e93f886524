"""Wire protocol version 1: JSON control messages plus binary PCM16 audio frames.

These models are the contract. The JSON Schema served at /v1/protocol.json is generated from them,
incoming messages are parsed with them strictly (`parse_client_message`: "900" is not an integer,
as the schema says), and tests validate every outgoing message against the published schema.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from pipelines.audio import SUPPORTED_INPUT_RATES
from pipelines.config import EndOfTurnMs
from pipelines.frames import (
    BudgetAction,
    BudgetStage,
    ErrorCode,
    InterruptReason,
    SafetyAction,
    SafetyCategory,
    SafetyDirection,
    TranscriptSource,
    TurnStatus,
)

PROTOCOL_VERSION = 1
OUTPUT_SAMPLE_RATES = (16_000, 22_050, 24_000, 44_100, 48_000)

InputRate = Literal[8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000]
OutputRate = Literal[16000, 22050, 24000, 44100, 48000]
assert set(InputRate.__args__) == set(SUPPORTED_INPUT_RATES)  # type: ignore[attr-defined]

# The fixed-value lists are the pipeline's (pipelines/frames.py), defined once there.
ReportedBudgetStage = BudgetStage
# "teacher": the classroom's teacher ended it; "classroom_closed": the teacher closed the classroom.
EndReason = Literal["client", "server_shutdown", "error", "teacher", "classroom_closed"]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------------ client -> server


class InputAudioFormat(_Message):
    encoding: Literal["pcm16"] = Field("pcm16", description="Signed 16-bit little-endian PCM")
    sample_rate: InputRate = Field(16_000, description="Other rates are resampled to 16 kHz")
    channels: Literal[1] = 1


class OutputAudioRequest(_Message):
    sample_rate: OutputRate | None = Field(None, description="Default: the voice's native rate")


class TurnOptions(_Message):
    """Turn-taking for this session (pipelines/config.py TurnConfig has the defaults and meaning)."""

    end_of_turn_silence_ms: EndOfTurnMs | None = None
    adaptive: bool | None = Field(None, description="Judge finished-or-thinking, not silence alone")
    patience_ms: int | None = Field(None, ge=150, le=30_000, description="Wait for a thinking learner")
    question_patience_ms: int | None = Field(None, ge=150, le=30_000, description="... after a tutor question")
    patience_action: Literal["commit", "prompt"] | None = None
    patience_prompt: str | None = Field(None, min_length=1, max_length=200)
    max_silence_ms: int | None = Field(None, ge=150, le=60_000)
    outvoted_share: float | None = Field(
        None, gt=0.0, le=1.0, description="Share of the patience waited when only the turn model doubts"
    )
    unsure_commit_ms: int | None = Field(
        None, ge=90, le=5000, description="Silence before answering when the turn model is only just sure"
    )


class BudgetOverride(_Message):
    ms: int = Field(ge=1, le=60_000)
    action: BudgetAction | None = None


class SessionStart(_Message):
    type: Literal["session.start"]
    protocol_version: Literal[1] = PROTOCOL_VERSION
    persona: str | None = None
    input_audio: InputAudioFormat = InputAudioFormat()
    output_audio: OutputAudioRequest = OutputAudioRequest()
    turn: TurnOptions = TurnOptions()
    budgets: dict[BudgetStage, BudgetOverride] = Field(
        default_factory=dict, description="Per-session deadlines; unset stages keep the server's"
    )


class InputText(_Message):
    type: Literal["input.text"]
    text: str = Field(description="Typed instead of spoken; limited to server.hello limits")

    @field_validator("text")
    @classmethod
    def _whole_characters(cls, text: str) -> str:
        # JSON parsing already refuses a lone surrogate; this guards text built in Python, since
        # one kept in the conversation history would break every later prompt.
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text contains a lone surrogate (half of a UTF-16 pair)") from None
        return text


class ResponseCancel(_Message):
    type: Literal["response.cancel"]


class ResponseRepeat(_Message):
    """Say the last answer again ("repeat that"), without asking the model again."""

    type: Literal["response.repeat"]


class SessionUpdate(_Message):
    type: Literal["session.update"]
    voice_rate: float | None = Field(None, ge=0.5, le=2.0, description="Tutor speech rate, 1 = normal")


class SessionEnd(_Message):
    type: Literal["session.end"]


ClientMessage = Annotated[
    SessionStart | InputText | ResponseCancel | ResponseRepeat | SessionUpdate | SessionEnd,
    Field(discriminator="type"),
]
CLIENT_TYPES = frozenset(
    ("session.start", "input.text", "response.cancel", "response.repeat", "session.update", "session.end")
)

# ------------------------------------------------------------------------------ server -> client


class OutputAudioFormat(_Message):
    encoding: Literal["pcm16"] = "pcm16"
    sample_rate: int
    channels: Literal[1] = 1


class Limits(_Message):
    max_frame_bytes: int
    max_text_chars: int


class PersonaInfo(_Message):
    id: str
    name: str
    subject: str


class ServerHello(_Message):
    """First message on every connection: what the server speaks and its reply audio format."""

    type: Literal["server.hello"] = "server.hello"
    protocol_version: Literal[1] = PROTOCOL_VERSION
    server: str
    ready: bool
    limits: Limits
    personas: list[PersonaInfo]
    input_sample_rates: list[int]
    output_audio: OutputAudioFormat


class SessionStarted(_Message):
    type: Literal["session.started"] = "session.started"
    session_id: str
    persona: PersonaInfo
    input_audio: InputAudioFormat
    output_audio: OutputAudioFormat
    end_of_turn_silence_ms: int


class SpeechStartedMsg(_Message):
    type: Literal["speech.started"] = "speech.started"
    turn_id: str
    stream_ms: int = Field(ge=0, description="Position in the session's input audio")


class SpeechStoppedMsg(_Message):
    type: Literal["speech.stopped"] = "speech.stopped"
    turn_id: str
    stream_ms: int = Field(ge=0)


class TurnThinkingMsg(_Message):
    """The student paused mid-thought; the tutor waits in silence (a client may show "thinking…").
    Speech that follows continues the same turn."""

    type: Literal["turn.thinking"] = "turn.thinking"
    turn_id: str
    patience_ms: int = Field(ge=0, description="How long the tutor waits, from the end of speech")


class TurnPromptMsg(_Message):
    """The tutor's patience ran out; it offers a gentle prompt and goes on listening."""

    type: Literal["turn.prompt"] = "turn.prompt"
    turn_id: str
    text: str


class TranscriptPartialMsg(_Message):
    type: Literal["transcript.partial"] = "transcript.partial"
    turn_id: str
    text: str


class TranscriptFinalMsg(_Message):
    type: Literal["transcript.final"] = "transcript.final"
    turn_id: str
    text: str
    source: TranscriptSource


class ReplyTextDeltaMsg(_Message):
    type: Literal["reply.text.delta"] = "reply.text.delta"
    turn_id: str
    delta: str


class ReplySentenceMsg(_Message):
    """A sentence whose audio starts now: the unit captions and screen readers should announce."""

    type: Literal["reply.sentence"] = "reply.sentence"
    turn_id: str
    text: str


class ReplyAudioStartedMsg(_Message):
    """Binary frames that follow, until reply.audio.done or reply.interrupted, are this turn's audio."""

    type: Literal["reply.audio.started"] = "reply.audio.started"
    turn_id: str
    format: OutputAudioFormat


class ReplyAudioDoneMsg(_Message):
    type: Literal["reply.audio.done"] = "reply.audio.done"
    turn_id: str
    audio_ms: int = Field(ge=0, description="Reply audio actually sent")


class ReplyInterruptedMsg(_Message):
    """The reply stopped. `student_continued`: the student went on talking before hearing any of
    it, so the same turn continues (expect speech.started and a new transcript.final for it)."""

    type: Literal["reply.interrupted"] = "reply.interrupted"
    turn_id: str
    reason: InterruptReason
    heard_text: str = Field(description="What the student was sent before the cut; kept in memory")


class Latency(_Message):
    """Milliseconds. Each stage runs from the previous mark; voice_to_voice is end to end (to
    the first audio the student hears, a filler included); voice_to_answer is to the first audio
    of the answer itself (equal to voice_to_voice when no filler was needed)."""

    endpointing_ms: int | None = None
    stt_ms: int | None = None
    llm_first_token_ms: int | None = None
    first_sentence_ms: int | None = None
    tts_first_audio_ms: int | None = None
    send_ms: int | None = None
    voice_to_voice_ms: int | None = None
    voice_to_answer_ms: int | None = None
    reply_gaps_ms: int | None = Field(
        None, description="Silence inside the reply where its next audio was late (0 = seamless)"
    )


class Usage(_Message):
    """Exact integer units; nothing is rounded here. `speculative` is work started for this turn
    and discarded because the student kept talking: metered, but not part of the answer."""

    stt_audio_ms: int = Field(ge=0)
    stt_partial_audio_ms: int = Field(ge=0)
    llm_prompt_tokens: int = Field(ge=0)
    llm_completion_tokens: int = Field(ge=0)
    tts_chars: int = Field(ge=0)
    tts_audio_ms: int = Field(ge=0)
    providers: dict[str, str]
    speculative: Usage | None = None


class BudgetMissMsg(_Message):
    stage: ReportedBudgetStage
    budget_ms: int
    elapsed_ms: int
    action: BudgetAction


class BudgetExceededMsg(_Message):
    """Sent the moment a stage overruns its deadline, with the action the server took."""

    type: Literal["budget.exceeded"] = "budget.exceeded"
    turn_id: str
    stage: ReportedBudgetStage
    budget_ms: int
    elapsed_ms: int
    action: BudgetAction


class SafetyEventMsg(_Message):
    category: SafetyCategory
    action: SafetyAction
    direction: SafetyDirection


class SafetyFlagMsg(_Message):
    """The safety layer acted on this turn: `input` screened the student's words (`redirect`: the
    tutor answered with its declared line without asking the model; `guide`: the model was
    steered), `output` replaced a sentence of the reply before it was spoken or shown. Carries no
    text of the student's or the model's."""

    type: Literal["safety.flag"] = "safety.flag"
    turn_id: str
    category: SafetyCategory
    action: SafetyAction
    direction: SafetyDirection


class TurnDoneMsg(_Message):
    type: Literal["turn.done"] = "turn.done"
    turn_id: str
    status: TurnStatus
    user_text: str
    reply_text: str = Field(description="The reply as the student heard it")
    latency: Latency
    usage: Usage
    budget_misses: list[BudgetMissMsg]
    safety: list[SafetyEventMsg] = Field(default_factory=list, description="Safety events of this turn")


class SessionPausedMsg(_Message):
    """The classroom's teacher paused the session: the reply in flight stopped, and the student's
    audio and typed text are ignored (typed text gets error `session_paused`) until
    session.resumed."""

    type: Literal["session.paused"] = "session.paused"
    reason: Literal["teacher"] = "teacher"


class SessionResumedMsg(_Message):
    type: Literal["session.resumed"] = "session.resumed"


class SessionEndedMsg(_Message):
    type: Literal["session.ended"] = "session.ended"
    session_id: str
    reason: EndReason
    usage: Usage


CapScope = Literal["session", "student", "classroom", "key"]
CapPeriod = Literal["session", "day", "month", "total"]
CapKindName = Literal["stt", "llm", "tts"]
CapUnit = Literal["audio_ms", "tokens", "chars", "minor_units"]


class AllowanceMsg(_Message):
    """One cap that applies to this session: the session's own, or one it shares with every
    session of its student, its classroom or a school key, per UTC day, month or in total."""

    scope: CapScope
    kind: CapKindName | None = Field(description="The engine kind capped; null for a cost cap (all kinds)")
    unit: CapUnit = Field(description="minor_units: a cost cap, in the currency's minor unit (cents)")
    limit: int = Field(ge=0)
    used: int = Field(ge=0, description="Used in the period, by every session of the scope")
    remaining: int = Field(ge=0)
    period: CapPeriod
    currency: str | None = Field(None, description="ISO 4217, for a cost cap")


class UsageUpdatedMsg(_Message):
    """The session's running usage, sent after each turn (the same units the ledger bills), and
    what is left of each cap that applies to the session (none when it is not capped)."""

    type: Literal["usage.updated"] = "usage.updated"
    usage: Usage
    allowances: list[AllowanceMsg] = Field(default_factory=list)


class UsageCapReachedMsg(_Message):
    """A call to an engine was not made: a cap for that kind is reached. `scope` says whose: the
    session's own, or the student's, classroom's or school key's for the `period`. Sent once per
    scope, kind and unit; the turn then ends with status `cap_reached` and a spoken and written
    notice. Typed text that needs no engine of that kind still works."""

    type: Literal["usage.cap_reached"] = "usage.cap_reached"
    kind: CapKindName
    unit: CapUnit
    limit: int = Field(ge=0)
    used: int = Field(ge=0)
    scope: CapScope = "session"
    period: CapPeriod = "session"
    currency: str | None = Field(None, description="ISO 4217, for a cost cap")


class ErrorMsg(_Message):
    type: Literal["error"] = "error"
    code: ErrorCode
    message: str = Field(description="For people; the code is for programs")
    fatal: bool = Field(False, description="True if the server closes the connection after this")
    turn_id: str | None = None


ServerMessage = Annotated[
    ServerHello
    | SessionStarted
    | SpeechStartedMsg
    | SpeechStoppedMsg
    | TurnThinkingMsg
    | TurnPromptMsg
    | TranscriptPartialMsg
    | TranscriptFinalMsg
    | ReplyTextDeltaMsg
    | ReplySentenceMsg
    | ReplyAudioStartedMsg
    | ReplyAudioDoneMsg
    | ReplyInterruptedMsg
    | BudgetExceededMsg
    | SafetyFlagMsg
    | TurnDoneMsg
    | SessionPausedMsg
    | SessionResumedMsg
    | SessionEndedMsg
    | UsageUpdatedMsg
    | UsageCapReachedMsg
    | ErrorMsg,
    Field(discriminator="type"),
]

CLIENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(ClientMessage)
SERVER_ADAPTER: TypeAdapter[Any] = TypeAdapter(ServerMessage)


class ProtocolError(Exception):
    """Bad input from the client: answered with an `error` message, and the session goes on."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message


def parse_client_message(raw: str | bytes) -> Any:
    """One client message, validated strictly against the published schema.

    Raises ProtocolError. Parsing with pydantic's JSON parser (not json.loads) bounds nesting
    depth and refuses lone surrogates, so no input can raise anything else.
    """
    try:
        return CLIENT_ADAPTER.validate_json(raw, strict=True)
    except ValidationError as exc:
        raise _protocol_error(exc) from None


_ENVELOPE = 'Every message is a JSON object with a string "type".'


def _protocol_error(exc: ValidationError) -> ProtocolError:
    first = exc.errors(include_url=False, include_input=False)[0]
    kind, loc, msg = first["type"], first["loc"], first["msg"]
    if kind == "string_unicode":
        return ProtocolError("invalid_json", "Message is not valid Unicode text: it has a lone surrogate.")
    if kind == "json_invalid":
        detail = msg.removeprefix("Invalid JSON: ")
        if "surrogate" in detail or "hex escape" in detail:
            detail += " (a \\ud800-\\udfff escape is only valid as half of a surrogate pair)"
        return ProtocolError("invalid_json", f"Message is not valid JSON: {detail}.")
    if kind == "union_tag_invalid":
        tag = first.get("ctx", {}).get("tag")
        known = ", ".join(sorted(CLIENT_TYPES))
        return ProtocolError("unknown_message_type", f"Unknown type {_quote(tag)}; known: {known}.")
    if not loc:
        return ProtocolError("invalid_message", _ENVELOPE)
    type_, where = str(loc[0]), ".".join(_quote_part(part) for part in loc[1:])
    if type_ == "session.start" and where.startswith("input_audio"):
        rates = ", ".join(str(r) for r in SUPPORTED_INPUT_RATES)
        return ProtocolError(
            "unsupported_audio_format",
            f"Unsupported input audio ({where}: {msg}). Send pcm16, mono, at one of: {rates} Hz.",
        )
    if type_ == "session.start" and where == "protocol_version":
        return ProtocolError(
            "unsupported_protocol_version", f"This server speaks protocol version {PROTOCOL_VERSION}."
        )
    return ProtocolError("invalid_message", f"Invalid {type_}: {where or 'message'}: {msg}.")


def _quote(value: object, limit: int = 60) -> str:
    """Client text inside an error message: ASCII only (no surrogate can reach the wire), short."""
    text = ascii(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _quote_part(part: object) -> str:
    """A path element: field names as they are, client-chosen keys quoted."""
    text = str(part)
    plain = isinstance(part, int) or (text.isascii() and text.isidentifier() and len(text) <= 40)
    return text if plain else _quote(part, 40)


def protocol_schema() -> dict[str, Any]:
    """The published JSON Schema (2020-12) of protocol version 1."""
    defs: dict[str, Any] = {}
    roots = {}
    for name, adapter in (("ClientMessage", CLIENT_ADAPTER), ("ServerMessage", SERVER_ADAPTER)):
        schema = adapter.json_schema(ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        roots[name] = schema
    defs.update(roots)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:convergio-voice:protocol:1",
        "title": "Convergio Voice WebSocket protocol",
        "x-protocol-version": PROTOCOL_VERSION,
        "x-binary-frames": {
            "client_to_server": "Audio: PCM16 little-endian mono at session.start input_audio rate. "
            "Even length, at most limits.max_frame_bytes (larger frames close the socket with 1009).",
            "server_to_client": "Reply audio: PCM16 little-endian mono at session.started "
            "output_audio rate, between reply.audio.started and reply.audio.done or reply.interrupted.",
        },
        "oneOf": [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerMessage"}],
        "$defs": defs,
    }

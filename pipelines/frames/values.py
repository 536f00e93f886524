"""The fixed-value lists: defined once here, used by the pipeline, the protocol and /metrics."""

from __future__ import annotations

import enum


class TurnStatus(enum.StrEnum):
    COMPLETED = "completed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"
    NO_SPEECH = "no_speech"
    FAILED = "failed"
    CAP_REACHED = "cap_reached"  # the session's usage cap stopped it; the turn says so


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
    CAP_REACHED = "cap_reached"
    INTERNAL_ERROR = "internal_error"
    # Classrooms: the teacher paused the session; the classroom was closed (or the student left
    # it); the classroom does not offer that tutor.
    SESSION_PAUSED = "session_paused"
    CLASSROOM_CLOSED = "classroom_closed"
    PERSONA_NOT_ALLOWED = "persona_not_allowed"

"""Every frame the pipeline passes, and the one home of the fixed-value lists the protocol uses.

Import from here: `pipelines.frames.values` (the lists), `.inputs`, `.events` (what clients see)
and `.metrics` (usage and latency as data) are its parts.

Two kinds of frame move between stages (see `pipelines.processor`):
- a `SystemFrame` is delivered at once to every stage, never queued: barge-in, the end of a turn,
  marks, usage and budget actions must not wait behind audio;
- a `DataFrame` is queued and handled in order by one stage after another.

The output events below are what a transport turns into wire messages; which of them are system
frames decides whether they can overtake reply audio on the way out.
"""

from __future__ import annotations

from pipelines.frames.base import DataFrame, Frame, SystemFrame
from pipelines.frames.events import (
    Allowance,
    BudgetMiss,
    CapReached,
    Interrupted,
    PipelineError,
    ReplyAudio,
    ReplyAudioDone,
    ReplyAudioStarted,
    ReplySentence,
    ReplyTextDelta,
    SafetyFlag,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
    TranscriptPartial,
    TurnDone,
    TurnPrompt,
    TurnThinking,
    TurnUsage,
    UsageUpdated,
)
from pipelines.frames.inputs import AudioIn, Interrupt, RepeatLast, TextIn, UpdateSettings
from pipelines.frames.metrics import LatencyMetric, UsageMetric
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
    CapReached,
    UsageUpdated,
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
    | CapReached
    | UsageUpdated
    | UsageMetric
    | LatencyMetric
)

__all__ = [
    "Allowance",
    "DataFrame",
    "Frame",
    "SystemFrame",
    "OUTPUT_EVENTS",
    "PipelineEvent",
    "SpeechStarted",
    "SpeechStopped",
    "TurnThinking",
    "TurnPrompt",
    "TranscriptPartial",
    "TranscriptFinal",
    "ReplyTextDelta",
    "ReplySentence",
    "ReplyAudioStarted",
    "ReplyAudio",
    "ReplyAudioDone",
    "Interrupted",
    "TurnUsage",
    "BudgetMiss",
    "SafetyFlag",
    "TurnDone",
    "PipelineError",
    "CapReached",
    "UsageUpdated",
    "AudioIn",
    "TextIn",
    "RepeatLast",
    "Interrupt",
    "UpdateSettings",
    "UsageMetric",
    "LatencyMetric",
    "TurnStatus",
    "InterruptReason",
    "TranscriptSource",
    "BudgetStage",
    "BudgetAction",
    "UsageKind",
    "SafetyCategory",
    "SafetyAction",
    "SafetyDirection",
    "ErrorCode",
]

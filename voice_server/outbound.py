"""Pipeline frames to protocol messages: one table.

A frame's fields are copied into the message fields of the same name; a rule only lists what has
to be derived. ReplyAudio is absent on purpose: it goes out as binary, not as a message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from pipelines.frames import (
    BudgetMiss,
    CapReached,
    Interrupted,
    PipelineError,
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
    UsageUpdated,
)
from voice_server import protocol


@dataclasses.dataclass(frozen=True, slots=True)
class Context:
    """What a rule may read besides the frame: the session's side of the conversion."""

    out_rate: int  # reply audio goes out at the session's rate, not the engine's


Derive = Callable[[Any, Context], dict[str, Any]]


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    message: type[BaseModel]
    derive: Derive | None = None


def _audio_format(_: ReplyAudioStarted, context: Context) -> dict[str, Any]:
    return {"format": {"sample_rate": context.out_rate}}


def _turn_done(frame: TurnDone, _: Context) -> dict[str, Any]:
    return {
        "latency": frame.latency_ms,
        "usage": dataclasses.asdict(frame.usage),
        "budget_misses": [_same_named(miss, protocol.BudgetMissMsg) for miss in frame.budget_misses],
        "safety": [_same_named(flag, protocol.SafetyEventMsg) for flag in frame.safety],
    }


def _usage_updated(frame: UsageUpdated) -> dict[str, Any]:
    allowances = [dataclasses.asdict(a) | {"remaining": a.remaining} for a in frame.allowances]
    return {"usage": dataclasses.asdict(frame.usage), "allowances": allowances}


TABLE: dict[type, Rule] = {
    SpeechStarted: Rule(protocol.SpeechStartedMsg),
    SpeechStopped: Rule(protocol.SpeechStoppedMsg),
    TurnThinking: Rule(protocol.TurnThinkingMsg),
    TurnPrompt: Rule(protocol.TurnPromptMsg),
    TranscriptPartial: Rule(protocol.TranscriptPartialMsg),
    TranscriptFinal: Rule(protocol.TranscriptFinalMsg),
    ReplyTextDelta: Rule(protocol.ReplyTextDeltaMsg),
    ReplySentence: Rule(protocol.ReplySentenceMsg),
    ReplyAudioStarted: Rule(protocol.ReplyAudioStartedMsg, _audio_format),
    ReplyAudioDone: Rule(protocol.ReplyAudioDoneMsg),
    Interrupted: Rule(protocol.ReplyInterruptedMsg),
    BudgetMiss: Rule(protocol.BudgetExceededMsg),
    SafetyFlag: Rule(protocol.SafetyFlagMsg),
    TurnDone: Rule(protocol.TurnDoneMsg, _turn_done),
    PipelineError: Rule(protocol.ErrorMsg),
    UsageUpdated: Rule(protocol.UsageUpdatedMsg, lambda frame, _: _usage_updated(frame)),
    CapReached: Rule(protocol.UsageCapReachedMsg),
}


def _same_named(frame: Any, message: type[BaseModel]) -> dict[str, Any]:
    wanted = message.model_fields
    return {f.name: getattr(frame, f.name) for f in dataclasses.fields(frame) if f.name in wanted}


def to_message(frame: object, context: Context) -> BaseModel | None:
    """The message for a frame, or None for frames that are not messages. Validated (so a frame
    carrying a value the protocol does not publish raises here, not on the client)."""
    rule = TABLE.get(type(frame))
    if rule is None:
        return None
    data = _same_named(frame, rule.message)
    if rule.derive is not None:
        data.update(rule.derive(frame, context))
    return rule.message.model_validate(data)

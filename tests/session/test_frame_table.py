"""The frame -> message table: every pipeline frame that is a message has exactly one rule, and
each rule yields a message of the published schema."""

from __future__ import annotations

import typing

from pipelines import frames
from pipelines.frames import (
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
from tests.session.conftest import SERVER_MESSAGES
from voice_server import outbound

CONTEXT = outbound.Context(out_rate=24_000)

SAMPLES = [
    SpeechStarted("turn-1", 120),
    SpeechStopped("turn-1", 900),
    TurnThinking("turn-1", 3000),
    TurnPrompt("turn-1", "Take your time."),
    TranscriptPartial("turn-1", "what is"),
    TranscriptFinal("turn-1", "what is two plus two", "speech"),
    ReplyTextDelta("turn-1", "Four"),
    ReplySentence("turn-1", "Four."),
    ReplyAudioStarted("turn-1", 22_050),
    ReplyAudioDone("turn-1", 480),
    Interrupted("turn-1", "barge_in", "Four"),
    BudgetMiss("turn-1", "voice_to_voice", 1500, 1620, "filler"),
    SafetyFlag("turn-1", "cheating", "guide", "input"),
    TurnDone(
        "turn-1", "completed", "what is two plus two", "Four.",
        {"stt_ms": 120, "voice_to_voice_ms": 800},
        TurnUsage(stt_audio_ms=900, tts_chars=5, providers={"llm": "fake/scripted"},
                  speculative=TurnUsage(stt_audio_ms=300)),
        (BudgetMiss("turn-1", "stt", 100, 120, "none"),),
        (SafetyFlag("turn-1", "cheating", "guide", "input"),),
    ),
    PipelineError("engine_timeout", "The tutor took too long (llm_first_token).", "turn-1"),
    UsageUpdated(TurnUsage(stt_audio_ms=900, llm_prompt_tokens=40, providers={"stt": "faster-whisper/tiny.en"})),
    CapReached("llm", "tokens", 2000, 1987),
]
# Further shapes of the same frames: shared caps, in units and in cost.
VARIANTS = [
    UsageUpdated(
        TurnUsage(llm_prompt_tokens=40),
        (Allowance("session", "llm", "tokens", 2000, 40, "session"),
         Allowance("student", None, "minor_units", 500, 620, "day", "EUR")),
    ),
    CapReached("tts", "minor_units", 500, 498, "classroom", "month", "EUR"),
    CapReached("stt", "audio_ms", 60_000, 59_100, "key", "total"),
]


def test_every_frame_but_audio_and_metrics_has_one_rule():
    # Reply audio goes out as binary; metric events feed /metrics and the ledger, not the client.
    events = set(typing.get_args(frames.PipelineEvent))
    assert set(outbound.TABLE) == events - {ReplyAudio, frames.UsageMetric, frames.LatencyMetric}
    assert {type(sample) for sample in SAMPLES} == set(outbound.TABLE)


def test_every_rule_gives_a_message_of_the_published_schema():
    for frame in SAMPLES + VARIANTS:
        message = outbound.to_message(frame, CONTEXT).model_dump(mode="json")
        errors = list(SERVER_MESSAGES.iter_errors(message))
        assert not errors, f"{type(frame).__name__}: {errors[0].message}"


def test_derived_fields():
    started = outbound.to_message(ReplyAudioStarted("turn-1", 22_050), CONTEXT)
    assert started.model_dump()["format"]["sample_rate"] == 24_000  # the session's rate, not the engine's
    done = outbound.to_message(next(s for s in SAMPLES if isinstance(s, TurnDone)), CONTEXT).model_dump()
    assert done["latency"]["voice_to_voice_ms"] == 800 and done["latency"]["endpointing_ms"] is None
    assert done["usage"]["speculative"]["stt_audio_ms"] == 300
    assert done["budget_misses"] == [{"stage": "stt", "budget_ms": 100, "elapsed_ms": 120, "action": "none"}]
    assert done["safety"] == [{"category": "cheating", "action": "guide", "direction": "input"}]


def test_audio_is_not_a_message():
    assert outbound.to_message(ReplyAudio("turn-1", b"\0\0", 16_000), CONTEXT) is None


def test_shared_caps_say_whose_cap_and_what_is_left():
    updated = outbound.to_message(VARIANTS[0], CONTEXT).model_dump(mode="json")
    assert [(a["scope"], a["remaining"]) for a in updated["allowances"]] == [("session", 1960), ("student", 0)]
    reached = outbound.to_message(VARIANTS[1], CONTEXT).model_dump(mode="json")
    assert (reached["scope"], reached["period"], reached["currency"]) == ("classroom", "month", "EUR")
    # A session cap, as before shared caps: the same message, now naming its scope.
    plain = outbound.to_message(SAMPLES[-1], CONTEXT).model_dump(mode="json")
    assert (plain["scope"], plain["period"], plain["currency"]) == ("session", "session", None)

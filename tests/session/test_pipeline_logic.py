"""Pipeline behaviour with scripted engines: turn flow, barge-in, memory, cancel, failures."""

from __future__ import annotations

import asyncio

import pytest

from pipelines.agent import TutorAgent
from pipelines.frames import (
    Interrupted,
    PipelineError,
    ReplyAudio,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
    TurnDone,
)
from pipelines.personas import PERSONAS
from pipelines.config import PipelineConfig, TurnConfig
from pipelines.pipeline import Engines, Pipeline
from tests.fakes import LoudnessVAD, ScriptedLLM, ScriptedSTT, ToneTTS

LONG_REPLY = (
    "Let us think about it together. What happens when you add two and two? "
    "Try counting on your fingers, then tell me what you get."
)


def _speech(ms: int) -> bytes:
    return b"\x10\x00" * (16 * ms)


def _silence(ms: int) -> bytes:
    return bytes(32 * ms)


def _at(amplitude: int, ms: int) -> bytes:
    """Sound the fake VAD calls speech, at a chosen level: 3000 is about -21 dBFS, 30 about -61."""
    return amplitude.to_bytes(2, "little", signed=True) * (16 * ms)


async def _make(llm: ScriptedLLM | None = None, **config) -> tuple[Pipeline, list]:
    events: list = []

    async def sink(event) -> None:
        events.append(event)

    engines = Engines(LoudnessVAD(), ScriptedSTT(), llm or ScriptedLLM(LONG_REPLY), ToneTTS())
    defaults = {"end_of_turn_silence_ms": 300, "speculation_silence_ms": 150, "partial_interval_ms": 0}
    turn = TurnConfig(**{**defaults, **config})
    cfg = PipelineConfig(turn=turn, playback_lead_ms=100, lesson_plans=False)
    return Pipeline(engines, TutorAgent(PERSONAS["maths"]), sink, cfg), events


async def _stream(pipeline: Pipeline, pcm: bytes, chunk_ms: int = 30) -> None:
    """Push at 10x real time: fast tests, but time still passes between frames."""
    step = 32 * chunk_ms
    for i in range(0, len(pcm), step):
        pipeline.push_audio(pcm[i : i + step])
        await asyncio.sleep(chunk_ms / 10_000)


async def _until(events: list, kind: type, timeout: float = 10):
    for _ in range(int(timeout / 0.01)):
        found = [e for e in events if isinstance(e, kind)]
        if found:
            return found[-1]
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {kind.__name__} in {[type(e).__name__ for e in events]}")


async def test_a_spoken_turn_runs_from_speech_to_reply_audio():
    pipeline, events = await _make(ScriptedLLM("Good question. What do you think?"))
    await _stream(pipeline, _silence(200) + _speech(600) + _silence(400))
    done = await _until(events, TurnDone)
    await pipeline.aclose()
    kinds = [type(e) for e in events]
    assert kinds.index(SpeechStarted) < kinds.index(SpeechStopped) < kinds.index(TranscriptFinal)
    assert done.status == "completed" and done.user_text == "What is two plus two?"
    assert done.reply_text == "Good question. What do you think?"
    assert {"endpointing_ms", "stt_ms", "llm_first_token_ms", "voice_to_voice_ms"} <= set(done.latency_ms)
    assert done.usage.tts_chars == len("Good question.") + len("What do you think?")
    assert done.usage.llm_completion_tokens == 6
    assert pipeline.agent.history[-1].assistant == done.reply_text


async def test_the_speculative_transcript_is_reused_when_the_student_stays_silent():
    pipeline, events = await _make()
    stt = pipeline.engines.stt
    await _stream(pipeline, _speech(600) + _silence(400))
    await _until(events, TranscriptFinal)
    await pipeline.aclose()
    assert stt.calls == 1  # transcribed once, during the pause, not again at the end of turn


async def test_a_short_pause_does_not_end_the_turn():
    pipeline, events = await _make()
    await _stream(pipeline, _speech(500) + _silence(200) + _speech(500) + _silence(400))
    await _until(events, TranscriptFinal)
    await pipeline.aclose()
    assert sum(isinstance(e, SpeechStarted) for e in events) == 1
    assert sum(isinstance(e, TranscriptFinal) for e in events) == 1


async def test_barge_in_silences_the_tutor_and_memory_keeps_only_what_was_sent():
    pipeline, events = await _make()
    await pipeline.submit_text("help me add")
    await _until(events, ReplyAudio)
    await asyncio.sleep(0.3)
    await _stream(pipeline, _speech(300))  # the student talks over the tutor
    interrupted = await _until(events, Interrupted)
    audio_before = sum(isinstance(e, ReplyAudio) for e in events)
    await asyncio.sleep(0.3)
    await pipeline.aclose()

    assert interrupted.reason == "barge_in"
    assert sum(isinstance(e, ReplyAudio) for e in events) == audio_before  # audio stopped at once
    heard = pipeline.agent.history[-1].assistant
    assert heard == interrupted.heard_text
    assert heard and LONG_REPLY.startswith(heard) and len(heard) < len(LONG_REPLY) / 2
    done = next(e for e in events if isinstance(e, TurnDone))
    assert done.status == "interrupted" and done.reply_text == heard
    # The cancelled generation is still metered from what was generated.
    assert done.usage.llm_completion_tokens > 0


async def test_cancel_stops_the_reply_and_the_next_question_still_works():
    pipeline, events = await _make()
    await pipeline.submit_text("first question")
    await _until(events, ReplyAudio)
    assert await pipeline.cancel_reply()
    first = await _until(events, TurnDone)
    assert first.status == "cancelled"
    events.clear()
    pipeline.engines.llm.reply = "Four."
    await pipeline.submit_text("second question")
    second = await _until(events, TurnDone)
    await pipeline.aclose()
    assert second.status == "completed" and second.reply_text == "Four."
    # The cut-off exchange is in memory with only the part the student heard.
    messages = pipeline.engines.llm.requests[-1].messages
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]


async def test_an_engine_failure_is_reported_and_the_session_stays_usable():
    pipeline, events = await _make(ScriptedLLM("unused", fail=True))
    await pipeline.submit_text("hello")
    done = await _until(events, TurnDone)
    assert done.status == "failed"
    assert any(isinstance(e, PipelineError) and e.code == "engine_error" for e in events)
    pipeline.engines.llm.fail = False
    pipeline.engines.llm.reply = "Hello there."
    events.clear()
    await pipeline.submit_text("hello again")
    done = await _until(events, TurnDone)
    await pipeline.aclose()
    assert done.status == "completed"


@pytest.mark.parametrize("heard", ["", "."])
async def test_a_turn_with_no_words_gets_no_reply(heard: str):
    pipeline, events = await _make()
    pipeline.engines.stt.text = heard
    await _stream(pipeline, _speech(400) + _silence(400))
    done = await _until(events, TurnDone)
    await pipeline.aclose()
    assert done.status == "no_speech" and not any(isinstance(e, ReplyAudio) for e in events)


async def test_speech_resumed_before_the_reply_is_heard_continues_the_same_turn():
    pipeline, events = await _make(ScriptedLLM(LONG_REPLY, token_delay_s=0.3))
    await _stream(pipeline, _speech(600) + _silence(350))  # the turn ends, the model is slow...
    await _until(events, SpeechStopped)
    await _stream(pipeline, _speech(600) + _silence(400))  # ...and the student goes on
    done = await _until(events, TurnDone, timeout=20)
    await pipeline.aclose()
    started = [e for e in events if isinstance(e, SpeechStarted)]
    assert len(started) == 2 and started[0].turn_id == started[1].turn_id == done.turn_id
    assert [e.reason for e in events if isinstance(e, Interrupted)] in ([], ["student_continued"])
    assert sum(isinstance(e, TurnDone) for e in events) == 1
    # The final transcription heard both parts of the sentence, pause included.
    assert pipeline.engines.stt.seconds[-1] > 1.4
    assert done.usage.speculative is not None  # the abandoned first attempt is metered


async def test_hiss_far_quieter_than_the_student_neither_holds_the_turn_open_nor_starts_a_new_one():
    # After the student stops, a browser's gain control lifts the silence until a VAD hears talk.
    pipeline, events = await _make(
        ScriptedLLM("Good question. What do you think?"), end_of_turn_silence_ms=1000, adaptive=False
    )
    await _stream(pipeline, _at(3000, 600) + _silence(400) + _at(30, 3000))
    done = await _until(events, TurnDone)
    await pipeline.aclose()
    assert done.status == "completed"
    assert sum(isinstance(e, SpeechStarted) for e in events) == 1
    assert not any(isinstance(e, Interrupted) for e in events)  # the hiss never barged in


async def test_without_the_quiet_gate_the_same_hiss_holds_the_turn_open():
    pipeline, events = await _make(end_of_turn_silence_ms=1000, adaptive=False, quiet_gate_db=0)
    await _stream(pipeline, _at(3000, 600) + _silence(400) + _at(30, 3000))
    await asyncio.sleep(0.3)
    await pipeline.aclose()
    assert not any(isinstance(e, SpeechStopped) for e in events)


async def test_a_quiet_breath_just_after_a_phrase_still_holds_the_turn():
    # An inhale 180 ms after a phrase says the student goes on, however quiet it is.
    pipeline, events = await _make(end_of_turn_silence_ms=300)
    await _stream(pipeline, _at(3000, 600) + _silence(180) + _at(30, 450) + _at(3000, 600) + _silence(400))
    await _until(events, TranscriptFinal)
    await pipeline.aclose()
    assert sum(isinstance(e, SpeechStarted) for e in events) == 1
    assert sum(isinstance(e, TranscriptFinal) for e in events) == 1
    assert pipeline.engines.stt.seconds[-1] > 1.8  # one transcript: both phrases and the breath


async def test_a_breath_later_in_the_pause_is_heard_with_a_wider_margin_than_the_hiss():
    # 400 ms into the pause: a breath 30 dB below the student's speech still continues the turn ...
    pipeline, events = await _make(end_of_turn_silence_ms=800, adaptive=False)
    await _stream(pipeline, _at(3000, 600) + _silence(400) + _at(95, 450) + _at(3000, 600) + _silence(1200))
    await _until(events, TranscriptFinal)
    await pipeline.aclose()
    assert sum(isinstance(e, SpeechStarted) for e in events) == 1
    assert sum(isinstance(e, TranscriptFinal) for e in events) == 1
    # ... and once the pause has lasted a second, the same sound is the gain control's hiss.
    pipeline, events = await _make(end_of_turn_silence_ms=1500, adaptive=False)
    await _stream(pipeline, _at(3000, 600) + _silence(1100) + _at(95, 2000))
    await _until(events, SpeechStopped)
    await pipeline.aclose()


async def test_softer_speech_within_the_margin_still_resumes_the_turn():
    pipeline, events = await _make(end_of_turn_silence_ms=1000, adaptive=False)
    # About 20 dB softer than before the pause: a quieter voice, still the student's.
    await _stream(pipeline, _at(3000, 600) + _silence(500) + _at(300, 600) + _silence(1200))
    await _until(events, TranscriptFinal)
    await pipeline.aclose()
    assert sum(isinstance(e, SpeechStarted) for e in events) == 1
    assert pipeline.engines.stt.seconds[-1] > 1.6  # one transcript of both parts

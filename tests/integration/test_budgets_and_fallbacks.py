"""Budgets act while a turn runs, and fallback chains take over from failing or silent engines.

The engines are the real embedded ones, wrapped to be slow, stalled or broken on purpose.
"""

from __future__ import annotations

import asyncio
import wave
from dataclasses import replace
from pathlib import Path

import pytest

from latency_bench.wer import word_error_rate
from models.base import CallControl, call_scope
from models.fallback import FallbackLLM, FallbackSTT, FallbackTTS
from pipelines.agent import TutorAgent
from pipelines.budgets import APOLOGY, FILLERS, BudgetPolicy
from pipelines.config import PipelineConfig, TurnConfig
from pipelines.frames import (
    BudgetAction,
    BudgetMiss,
    BudgetStage,
    PipelineError,
    ReplyAudio,
    ReplySentence,
    ReplyTextDelta,
    TranscriptFinal,
    TranscriptPartial,
    TurnDone,
)
from pipelines.personas import PERSONAS
from pipelines.pipeline import Pipeline
from tests.wrappers import SlowLLM, SlowSTT, SlowTTS

pytestmark = pytest.mark.models


def _policy(stage: str, ms: int, action: BudgetAction, stall_ms: int = 8000) -> BudgetPolicy:
    # Only the stage under test has a budget, so nothing else interferes.
    return BudgetPolicy.only(BudgetStage(stage), ms, action, stall_ms=stall_ms)


class Session:
    def __init__(self, engines, policy: BudgetPolicy, **config) -> None:
        self.events: list = []
        self.pipeline = Pipeline(
            engines,
            TutorAgent(PERSONAS["maths"]),
            self._sink,
            PipelineConfig(budgets=policy, playback_lead_ms=5000, turn=TurnConfig(**config), lesson_plans=False),
        )

    async def _sink(self, event) -> None:
        self.events.append(event)

    async def ask(self, text: str, timeout: float = 60) -> TurnDone:
        start = len(self.events)
        await self.pipeline.submit_text(text)
        return await self.done_after(start, timeout)

    async def done_after(self, start: int, timeout: float = 60) -> TurnDone:
        for _ in range(int(timeout / 0.02)):
            done = [e for e in self.events[start:] if isinstance(e, TurnDone)]
            if done:
                return done[-1]
            await asyncio.sleep(0.02)
        raise AssertionError("turn did not finish")

    def of(self, kind, start: int = 0) -> list:
        return [e for e in self.events[start:] if isinstance(e, kind)]

    def spoken(self, start: int = 0) -> list[str]:
        return [e.text for e in self.of(ReplySentence, start)]


async def test_slow_first_token_plays_a_filler_then_the_answer(real_engines):
    slow = SlowLLM(real_engines.llm, first_delay_s=1.2)
    session = Session(replace(real_engines, llm=slow), _policy("llm_first_token", 300, BudgetAction.FILLER))
    done = await session.ask("What is a fraction?")
    miss = session.of(BudgetMiss)[0]
    assert (miss.stage, miss.action) == ("llm_first_token", "filler")
    spoken = session.spoken()
    assert spoken[0] in FILLERS and len(spoken) > 1  # the student heard the filler, then the answer
    assert done.status == "completed" and done.reply_text
    assert FILLERS[0] not in done.reply_text  # the filler is not part of the tutor's answer
    # The filler's audio went out while the model was still silent.
    kinds = [type(e) for e in session.events]
    assert kinds.index(ReplyAudio) < kinds.index(ReplyTextDelta)
    # The session stays usable: the next turn, on a healthy engine, is answered.
    slow.first_delay_s = 0
    follow_up = await session.ask("And a decimal?")
    assert follow_up.status == "completed" and follow_up.reply_text
    await session.pipeline.aclose()


def _clip_path(speech_clips: Path, manifest: list[dict], preferred: str) -> Path:
    """The preferred real clip, or the longest one (the synthetic fallback has other names)."""
    entry = next((e for e in manifest if e["file"] == preferred), None)
    entry = entry or max(manifest, key=lambda e: e["duration_s"])
    return speech_clips / entry["file"]


async def test_slow_speech_to_text_answers_the_partial_transcript(
    real_engines, speech_clips: Path, speech_manifest
):
    engines = replace(real_engines, stt=SlowSTT(real_engines.stt, final_delay_s=4))
    # A fixed end-of-turn silence: the turn policy would (rightly) wait for the slow transcript.
    session = Session(
        engines, _policy("stt", 300, BudgetAction.PARTIAL_TRANSCRIPT), partial_interval_ms=600, adaptive=False
    )
    clip = _clip_path(speech_clips, speech_manifest, "librispeech_1272-128104-0000.16k.wav")
    with wave.open(str(clip)) as wav:
        pcm = wav.readframes(wav.getnframes())
    pcm += bytes(32_000)  # 1 s of silence ends the turn
    for i in range(0, len(pcm), 640):
        session.pipeline.push_audio(pcm[i : i + 640])
        await asyncio.sleep(0.02)
    done = await session.done_after(0)
    miss = session.of(BudgetMiss)[0]
    assert (miss.stage, miss.action) == ("stt", "partial_transcript")
    partials = [e.text for e in session.of(TranscriptPartial)]
    final = session.of(TranscriptFinal)[0]
    assert partials and final.text == partials[-1]
    assert done.status == "completed" and done.reply_text
    await session.pipeline.aclose()


async def test_slow_generation_shortens_the_answer(real_engines):
    slow = SlowLLM(real_engines.llm, token_delay_s=0.12)
    session = Session(replace(real_engines, llm=slow), _policy("first_sentence", 200, BudgetAction.SHORTEN))
    done = await session.ask("Tell me everything about the water cycle.")
    assert [(m.stage, m.action) for m in session.of(BudgetMiss)] == [("first_sentence", "shorten")]
    spoken = session.spoken()
    assert 1 <= len(spoken) <= 2
    assert done.reply_text == " ".join(spoken)  # the answer, and the memory, end where speech ended
    # Metered as generated: the real engine ran ahead of this slowed reader, and every token counts.
    assert 0 < done.usage.llm_completion_tokens <= 64
    await session.pipeline.aclose()


async def test_slow_voice_plays_the_cached_filler(real_engines):
    engines = replace(real_engines, tts=SlowTTS(real_engines.tts, first_delay_s=1.5))
    session = Session(engines, _policy("tts_first_audio", 200, BudgetAction.FILLER))
    done = await session.ask("What is seven times six?")
    assert [(m.stage, m.action) for m in session.of(BudgetMiss)] == [("tts_first_audio", "filler")]
    assert session.spoken()[0] in FILLERS
    assert done.status == "completed"
    await session.pipeline.aclose()


async def test_a_stalled_engine_gets_an_apology_not_silence(real_engines):
    stalled = SlowLLM(real_engines.llm, stall=True)
    session = Session(replace(real_engines, llm=stalled), _policy("voice_to_voice", 400, BudgetAction.FILLER, stall_ms=1500))
    done = await session.ask("Are you there?")
    assert done.status == "failed"
    assert [e.code for e in session.of(PipelineError)] == ["engine_timeout"]
    spoken = session.spoken()
    assert spoken[0] in FILLERS and spoken[-1] == APOLOGY  # never silence
    assert sum(len(e.pcm16) for e in session.of(ReplyAudio)) > 0
    stalled.stall = False  # the engine recovers; the session is still usable
    assert (await session.ask("Hello again.")).status == "completed"
    await session.pipeline.aclose()


@pytest.mark.parametrize("broken", ["fails", "goes_silent"])
async def test_llm_fallback_chain_answers_from_the_second_engine(real_engines, broken):
    first = SlowLLM(real_engines.llm, fail=broken == "fails", stall=broken == "goes_silent")
    failures: list[str] = []
    chain = FallbackLLM(
        [first, real_engines.llm],
        on_fallback=lambda kind, failed, nxt, reason: failures.append(reason),
    )
    # The stage's deadline is the attempt's: a silent engine is abandoned the moment it passes.
    # 1.5 s, not less: the working engine must always beat it, on a busy two-core machine too
    # (a second engine that misses it falls back again, to the silent one).
    session = Session(replace(real_engines, llm=chain), _policy("llm_first_token", 1500, BudgetAction.FALLBACK))
    done = await session.ask("What is two plus three?")
    assert done.status == "completed" and done.reply_text
    assert failures == ["error" if broken == "fails" else "deadline"]
    misses = [(m.stage, m.action) for m in session.of(BudgetMiss)]
    if broken == "goes_silent":  # the deadline, not an error, moved the turn on
        assert misses == [("llm_first_token", "fallback")]
    assert done.usage.providers["llm"] == f"{real_engines.llm.info.provider}/{real_engines.llm.info.model}"
    # The failed provider now sits out its cooldown: the next turn goes straight to the second.
    failures.clear()
    assert (await session.ask("And four plus four?")).status == "completed"
    assert failures == []
    await session.pipeline.aclose()


async def test_tts_and_stt_fallback_chains(real_engines, speech_clips: Path, speech_manifest):
    tts = FallbackTTS([SlowTTS(real_engines.tts, fail=True), real_engines.tts])
    chunks = [c async for c in tts.synthesize("Hello there.", PERSONAS["maths"].voice)]
    assert sum(len(c.pcm16) for c in chunks) > 0

    stt = FallbackSTT([SlowSTT(real_engines.stt, final_delay_s=30), real_engines.stt])
    import numpy as np

    clip = _clip_path(speech_clips, speech_manifest, "LJ001-0002.16k.wav")
    with wave.open(str(clip)) as wav:
        audio = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float32) / 32768
    # The caller owns the deadline now (in a turn, the budget watch with action "fallback"); this
    # test plays that caller: after 0.5 s it asks the chain to switch engines.
    control = CallControl()
    asyncio.get_running_loop().call_later(0.5, control.switch.set)
    with call_scope(control):
        result = await stt.transcribe(audio)
    assert control.served_by == real_engines.stt.info
    reference = next(e["transcript"] for e in speech_manifest if e["file"] == clip.name)
    assert word_error_rate([reference], [result.text]) < 0.25

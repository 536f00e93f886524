"""The tutor's vetted lines are synthesised once and then heard at once, in every session; the
model's own words are never kept, and a line heard from the store costs no engine call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np

from models.base import SynthesizedAudio, VoiceSettings
from pipelines.agent import TutorAgent
from pipelines.config import PipelineConfig
from pipelines.frames import ReplyAudio, TurnDone
from pipelines.personas import PERSONAS
from pipelines.pipeline import Engines, Pipeline
from pipelines.stock_speech import StockSpeech
from tests.fakes import LoudnessVAD, ScriptedLLM, ScriptedSTT, ToneTTS


class CountingTTS(ToneTTS):
    """5 ms of audio a character, each text its own tone: replies play out quickly, and audio
    from the store can be told apart from audio made again."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[SynthesizedAudio]:
        self.texts.append(text)
        await asyncio.sleep(0.001)
        level = 100 + sum(map(ord, text)) % 1000
        yield SynthesizedAudio(np.full(len(text) * 80, level, dtype="<i2").tobytes(), self.sample_rate)


async def _turn(tts: CountingTTS, stock: StockSpeech, text: str, *, lesson_plans: bool = True) -> tuple[TurnDone, bytes]:
    events: list = []

    async def sink(event) -> None:
        events.append(event)

    engines = Engines(LoudnessVAD(), ScriptedSTT(), ScriptedLLM("Ten and five make fifteen."), tts, stock=stock)
    pipeline = Pipeline(engines, TutorAgent(PERSONAS["maths"]), sink, PipelineConfig(lesson_plans=lesson_plans))
    turn_id = await pipeline.submit_text(text)
    for _ in range(1000):
        done = next((e for e in events if isinstance(e, TurnDone) and e.turn_id == turn_id), None)
        if done is not None:
            await pipeline.aclose()
            audio = b"".join(e.pcm16 for e in events if isinstance(e, ReplyAudio))
            return done, audio
        await asyncio.sleep(0.01)
    raise AssertionError("no turn.done")


async def test_a_vetted_line_is_synthesised_once_and_heard_the_same_in_the_next_session():
    tts, stock = CountingTTS(), StockSpeech()
    first, first_audio = await _turn(tts, stock, "Just tell me what 15 plus 27 is.")
    calls = len(tts.texts)
    assert calls >= 1 and len(stock) == calls
    second, second_audio = await _turn(tts, stock, "Just tell me what 15 plus 27 is.")
    assert len(tts.texts) == calls  # no engine call for a line already kept
    assert second.reply_text == first.reply_text and second_audio == first_audio
    assert first.usage.tts_chars > 0 and second.usage.tts_chars == 0  # nothing was sent to the engine


async def test_the_models_own_words_are_never_kept():
    tts, stock = CountingTTS(), StockSpeech()
    await _turn(tts, stock, "Tell me something.", lesson_plans=False)
    assert tts.texts and len(stock) == 0


def test_the_store_is_bounded_and_forgets_the_least_recently_heard_line():
    stock = StockSpeech(max_lines=2)
    audio = (SynthesizedAudio(b"\x00\x01", 16_000),)
    keys = [StockSpeech.key(ToneTTS.info, VoiceSettings(), text) for text in ("a", "b", "c")]
    stock.keep(keys[0], audio)
    stock.keep(keys[1], audio)
    assert stock.get(keys[0]) == audio  # "a" heard again: "b" is now the oldest
    stock.keep(keys[2], audio)
    assert stock.get(keys[1]) is None and stock.get(keys[0]) == audio and len(stock) == 2

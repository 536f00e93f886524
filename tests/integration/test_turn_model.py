"""Smart Turn, the real turn-completion model: its input is what it was trained on, and with it a
finished question is answered before the fixed fallback silence."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from latency_bench.wer import normalise
from models.registry import spec_for
from models.smart_turn import SmartTurn
from pipelines.agent import TutorAgent
from pipelines.config import PipelineConfig, TurnConfig
from pipelines.frames import TranscriptFinal, TurnThinking
from pipelines.personas import PERSONAS
from pipelines.pipeline import Engines, Pipeline
from tests.fakes import ScriptedLLM, ToneTTS
from tests.speech import spoken

pytestmark = pytest.mark.models

FALLBACK_MS = 3000


@pytest.fixture(scope="module")
def smart_turn() -> SmartTurn:
    return spec_for("turn", "smart-turn").load()


def test_features_are_the_last_eight_seconds_as_whisper_log_mel(smart_turn: SmartTurn):
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(16_000) / 16_000)
    short = smart_turn.features(tone.astype(np.float32))
    long = smart_turn.features(np.random.default_rng(0).normal(0, 0.1, 16_000 * 12).astype(np.float32))
    assert short.shape == long.shape == (1, 80, 800) and short.dtype == np.float32
    # Padding goes at the front: the end of the speech stays where the model looks for it.
    padding, speech = short[0, :, :600], short[0, :, -50:]
    assert np.allclose(padding, padding[:, :1]) and not np.allclose(speech, padding[:, :1])


async def test_a_finished_question_scores_as_complete(smart_turn: SmartTurn):
    score = await smart_turn.completion(
        np.concatenate([spoken("What is seven times eight?"), np.zeros(3200)])
    )
    assert 0.5 <= score <= 1.0


async def test_with_the_real_model_a_finished_question_is_committed_before_the_fallback(real_engines):
    assert real_engines.turn is not None, "the smart-turn extra is part of the test install"
    events: list = []

    async def sink(event) -> None:
        events.append(event)

    engines = Engines(
        real_engines.vad,
        real_engines.stt,
        ScriptedLLM("Add the tops when the bottoms match."),
        ToneTTS(),
        turn=real_engines.turn,
    )
    config = TurnConfig(end_of_turn_silence_ms=FALLBACK_MS, partial_interval_ms=0)
    pipeline = Pipeline(engines, TutorAgent(PERSONAS["maths"]), sink, PipelineConfig(turn=config, lesson_plans=False))
    pcm = (np.concatenate([np.zeros(4800), spoken("How do I add two fractions?")]) * 32767).astype("<i2")
    for i in range(0, len(pcm.tobytes()), 960):  # 30 ms frames, at real time: the engines run meanwhile
        pipeline.push_audio(pcm.tobytes()[i : i + 960])
        await asyncio.sleep(0.03)
    # Then silence, as a microphone sends it, until the turn is committed: a finished question must
    # be committed before the fixed fallback silence would have ended it, however busy the machine.
    silence_ms = 0
    while silence_ms < FALLBACK_MS - 300 and not any(isinstance(e, TranscriptFinal) for e in events):
        pipeline.push_audio(bytes(960))
        silence_ms += 30
        await asyncio.sleep(0.03)
    await pipeline.aclose()
    finals = [e for e in events if isinstance(e, TranscriptFinal)]
    assert len(finals) == 1 and {"add", "fractions"} <= set(normalise(finals[0].text).split())
    assert not any(isinstance(e, TurnThinking) for e in events)

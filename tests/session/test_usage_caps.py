"""Usage caps: a capped session never sends an engine a call that would go over its cap. The
client is told once per kind (`usage.cap_reached`), the turn ends with a written and spoken
notice (status `cap_reached`), and the session stays usable for whatever needs no capped engine.
Calls are counted at the engines, under the caps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from models.base import EngineError, GenerationRequest, SynthesizedAudio, Transcription, VoiceSettings
from pipelines.agent import TutorAgent
from pipelines.allowance import CAP_REACHED, AllowanceStage, CappedLLM, UsageCaps
from pipelines.budgets import CAP_NOTICE
from pipelines.config import PipelineConfig, TurnConfig
from pipelines.control import Usage
from pipelines.fillers import FillerCache
from pipelines.frames import CapReached, PipelineError, ReplyAudio, TurnDone, UsageKind, UsageUpdated
from pipelines.personas import PERSONAS
from pipelines.pipeline import Engines, Pipeline
from tests.fakes import LoudnessVAD, ScriptedLLM, ScriptedSTT, ToneTTS
from tests.session.conftest import QuickTTS


class CountingSTT(ScriptedSTT):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def transcribe(self, audio: np.ndarray, *, partial: bool = False) -> Transcription:
        self.calls += 1
        return await super().transcribe(audio, partial=partial)


class CountingLLM(ScriptedLLM):
    def __init__(self, reply: str) -> None:
        super().__init__(reply, token_delay_s=0.001)
        self.calls = 0
        self.max_tokens: list[int] = []

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        self.calls += 1
        self.max_tokens.append(request.max_tokens)
        async for piece in super().stream(request):
            yield piece


class CountingTTS(QuickTTS):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[SynthesizedAudio]:
        self.calls += 1
        async for audio in super().synthesize(text, voice):
            yield audio


async def _capped(caps: UsageCaps, reply: str = "Four. Well done.") -> tuple[Pipeline, Engines, list]:
    events: list = []

    async def sink(event) -> None:
        events.append(event)

    fillers = FillerCache()
    engines = Engines(LoudnessVAD(), CountingSTT(), CountingLLM(reply), CountingTTS(), fillers)
    await fillers.prepare(engines.tts, [PERSONAS["maths"].voice])
    engines.tts.calls = 0  # the notices are made at start-up, before any session
    turn = TurnConfig(end_of_turn_silence_ms=300, speculation_silence_ms=150, partial_interval_ms=0)
    config = PipelineConfig(turn=turn, caps=caps, playback_lead_ms=50, lesson_plans=False)
    return Pipeline(engines, TutorAgent(PERSONAS["maths"]), sink, config), engines, events


async def _turn(pipeline: Pipeline, events: list, text: str) -> TurnDone:
    before = sum(isinstance(e, TurnDone) for e in events)
    await pipeline.submit_text(text)
    for _ in range(1000):
        done = [e for e in events if isinstance(e, TurnDone)]
        if len(done) > before:
            return done[-1]
        await asyncio.sleep(0.01)
    raise AssertionError("no turn.done")


async def test_at_the_llm_cap_the_model_gets_no_further_call_and_the_turn_says_why():
    pipeline, engines, events = await _capped(UsageCaps(llm_tokens=200))
    first = await _turn(pipeline, events, "What is two plus two?")
    assert first.status == "completed" and engines.llm.calls == 1
    used = first.usage.llm_prompt_tokens + first.usage.llm_completion_tokens
    calls = engines.llm.calls
    for _ in range(3):  # however many turns follow, the capped engine is never asked again
        done = await _turn(pipeline, events, "And three plus three?")
        if done.status == "cap_reached":
            break
        calls = engines.llm.calls
    assert done.status == "cap_reached" and engines.llm.calls == calls
    reached = [e for e in events if isinstance(e, CapReached)]
    assert (
        len(reached) == 1 and reached[0].kind == "llm" and reached[0].limit == 200 and reached[0].used >= used
    )
    notice = [e for e in events if isinstance(e, PipelineError) and e.code == "cap_reached"]
    assert notice and notice[-1].message == CAP_NOTICE  # written...
    assert any(isinstance(e, ReplyAudio) and e.turn_id == done.turn_id for e in events)  # ...and spoken
    assert pipeline.usage_total.llm_prompt_tokens + pipeline.usage_total.llm_completion_tokens <= 200
    # Another turn: still no call, and the client is not told again.
    await _turn(pipeline, events, "Please?")
    assert engines.llm.calls == calls and len([e for e in events if isinstance(e, CapReached)]) == 1
    # "Say that again" needs no model: the session stays usable.
    assert await pipeline.repeat_last()
    await pipeline.aclose()


async def test_at_the_tts_cap_the_reply_is_shown_not_synthesised_and_the_notice_is_still_heard():
    pipeline, engines, events = await _capped(UsageCaps(tts_chars=10), reply="Four is the answer. Well done.")
    done = await _turn(pipeline, events, "What is two plus two?")
    assert done.status == "cap_reached"
    assert engines.tts.calls == 0  # "Four is the answer." is 19 characters: never sent
    assert pipeline.usage_total.tts_chars == 0  # ... so never metered either
    assert [e.kind for e in events if isinstance(e, CapReached)] == ["tts"]
    assert any(isinstance(e, ReplyAudio) for e in events)  # the notice, made at start-up
    await pipeline.aclose()


async def test_at_the_stt_cap_speech_is_not_transcribed_and_typing_still_works():
    pipeline, engines, events = await _capped(UsageCaps(stt_audio_ms=100))
    speech = b"\x10\x00" * 16 * 600 + bytes(32 * 600)
    for i in range(0, len(speech), 960):
        pipeline.push_audio(speech[i : i + 960])
        await asyncio.sleep(0.003)
    for _ in range(500):
        if any(isinstance(e, TurnDone) for e in events):
            break
        await asyncio.sleep(0.01)
    spoken = [e for e in events if isinstance(e, TurnDone)]
    assert spoken and spoken[-1].status == "cap_reached" and engines.stt.calls == 0
    typed = await _turn(pipeline, events, "What is two plus two?")  # typing needs no STT
    assert typed.status == "completed" and engines.llm.calls == 1
    await pipeline.aclose()


async def test_the_client_gets_the_running_usage_after_each_turn():
    pipeline, _, events = await _capped(UsageCaps(llm_tokens=100_000))
    await _turn(pipeline, events, "What is two plus two?")
    for _ in range(100):
        if any(isinstance(e, UsageUpdated) for e in events):
            break
        await asyncio.sleep(0.01)
    updated = [e for e in events if isinstance(e, UsageUpdated)]
    assert updated and updated[-1].usage.llm_prompt_tokens == pipeline.usage_total.llm_prompt_tokens > 0
    await pipeline.aclose()


async def test_an_answer_is_cut_to_what_is_left_of_the_cap():
    allowance = AllowanceStage(UsageCaps(llm_tokens=300))
    allowance.push = lambda frame: None  # type: ignore[method-assign] - no pipeline around it
    llm = CountingLLM("Four.")
    request = GenerationRequest(messages=[_message("What is two plus two?")], max_tokens=96)
    _ = [piece async for piece in CappedLLM(llm, allowance).stream(request)]
    assert llm.max_tokens == [96]
    allowance.on_system(Usage("t", None, UsageKind.LLM_PROMPT_TOKENS, 250, llm.info))
    request = GenerationRequest(messages=[_message("And?")], max_tokens=96)
    _ = [piece async for piece in CappedLLM(llm, allowance).stream(request)]
    assert llm.max_tokens[-1] <= 50 - 9  # what is left, less a high estimate of the prompt


@given(
    st.lists(st.integers(min_value=0, max_value=500), max_size=30), st.integers(min_value=0, max_value=2000)
)
def test_a_call_is_permitted_only_while_it_fits_under_the_cap(amounts: list[int], cap: int):
    allowance = AllowanceStage(UsageCaps(tts_chars=cap))
    allowance.push = lambda frame: None  # type: ignore[method-assign] - no pipeline around it
    for amount in amounts:
        try:
            allowance.permit("tts", amount)
        except EngineError as exc:
            assert exc.code == CAP_REACHED and allowance.used["tts"] + amount > cap
            continue
        allowance.on_system(Usage("t", None, UsageKind.TTS_CHARS, amount, ToneTTS.info))
        assert allowance.used["tts"] <= cap


def _message(text: str):
    from models.base import ChatMessage

    return ChatMessage("user", text)

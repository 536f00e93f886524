"""A fallback chain tries engines of one kind in order: an error or the caller's deadline moves a
call to the next engine, a failed engine sits out a cooldown, and output once produced is never
restarted elsewhere."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from models.base import (
    CallControl,
    ChatMessage,
    EngineError,
    EngineInfo,
    GenerationRequest,
    LanguageModel,
    SpeechToText,
    SynthesizedAudio,
    TextToSpeech,
    Transcription,
    VoiceSettings,
    call_scope,
)
from models.fallback import FallbackLLM, FallbackSTT, FallbackTTS, fallback_chain


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeLLM(LanguageModel):
    """Streams `reply` word by word; `fail` raises before any output, `fail_after` after that many
    words, `stall` accepts the request and never answers."""

    def __init__(self, name: str, reply: str = "fine thanks", *, fail: bool = False,
                 fail_after: int | None = None, stall: bool = False) -> None:
        self.info = EngineInfo("llm", name, f"{name}-model")
        self.reply, self.fail, self.fail_after, self.stall = reply, fail, fail_after, stall
        self.calls = 0
        self.requests: list[GenerationRequest] = []
        self.closed = 0

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        self.calls += 1
        self.requests.append(request)
        request.usage.prompt_tokens = 10
        try:
            if self.fail:
                raise EngineError(f"{self.info.provider} is down", code="engine_unreachable")
            if self.stall:
                await asyncio.Event().wait()
            for index, word in enumerate(self.reply.split()):
                if index == self.fail_after:
                    raise EngineError(f"{self.info.provider} broke mid-answer")
                if request.cancel.is_set():
                    return
                request.usage.completion_tokens += 1
                yield word + " "
                await asyncio.sleep(0)
        finally:
            self.closed += 1


def llm_chain(*engines: FakeLLM, clock: Clock | None = None, cooldown_s: float = 30.0):
    switches: list[tuple[str, str, str, str]] = []
    chain = FallbackLLM(
        list(engines),
        cooldown_s=cooldown_s,
        clock=clock or Clock(),
        on_fallback=lambda kind, failed, nxt, reason: switches.append(
            (kind, failed.provider, nxt.provider, reason)
        ),
    )
    return chain, switches


async def answer(chain: LanguageModel, control: CallControl | None = None) -> tuple[str, GenerationRequest]:
    request = GenerationRequest([ChatMessage("user", "how are you")])
    with call_scope(control or CallControl()):
        text = "".join([piece async for piece in chain.stream(request)])
    return text, request


async def test_an_engine_error_moves_the_call_to_the_next_engine():
    first, second = FakeLLM("first", fail=True), FakeLLM("second")
    chain, switches = llm_chain(first, second)
    control = CallControl()
    text, request = await answer(chain, control)
    assert text == "fine thanks "
    assert switches == [("llm", "first", "second", "error")]
    assert control.served_by == second.info  # usage belongs to the engine that answered


async def test_the_callers_deadline_switches_to_the_next_engine_before_any_output():
    first, second = FakeLLM("first", stall=True), FakeLLM("second")
    chain, switches = llm_chain(first, second)
    control = CallControl()
    asyncio.get_running_loop().call_later(0.05, control.switch.set)
    text, _ = await asyncio.wait_for(answer(chain, control), 5)
    assert text == "fine thanks "
    assert switches == [("llm", "first", "second", "deadline")]
    assert control.served_by == second.info
    assert first.closed == 1  # the abandoned attempt was stopped, not left running
    assert first.requests[0].cancel.is_set()
    assert not control.switch.is_set()  # acted on, so the caller can ask again later


async def test_a_switch_after_output_is_ignored_and_the_answer_finishes():
    first, second = FakeLLM("first", reply="one two three"), FakeLLM("second")
    chain, switches = llm_chain(first, second)
    control = CallControl()
    request = GenerationRequest([ChatMessage("user", "count")])
    pieces = []
    with call_scope(control):
        async for piece in chain.stream(request):
            pieces.append(piece)
            control.switch.set()
    assert "".join(pieces) == "one two three "
    assert switches == [] and second.calls == 0
    assert control.served_by == first.info


async def test_a_switch_with_no_engine_left_lets_the_last_one_answer():
    control = CallControl()
    switches: list[str] = []

    def on_fallback(kind: str, failed: EngineInfo, nxt: EngineInfo, reason: str) -> None:
        switches.append(reason)
        control.switch.set()  # the deadline passes just as the last engine starts

    chain = FallbackLLM([FakeLLM("first", fail=True), FakeLLM("second")], on_fallback=on_fallback)
    text, _ = await answer(chain, control)
    assert text == "fine thanks "
    assert switches == ["error"]


async def test_a_failure_after_output_is_fatal_and_never_restarts_the_answer():
    first, second = FakeLLM("first", reply="one two three", fail_after=2), FakeLLM("second")
    chain, switches = llm_chain(first, second)
    with pytest.raises(EngineError, match="mid-output"):
        await answer(chain)
    assert second.calls == 0 and switches == []


async def test_a_failed_engine_sits_out_the_cooldown_then_is_tried_again():
    clock = Clock()
    first, second = FakeLLM("first", fail=True), FakeLLM("second")
    chain, switches = llm_chain(first, second, clock=clock, cooldown_s=30)

    await answer(chain)
    assert (first.calls, second.calls) == (1, 1)

    clock.now += 29
    control = CallControl()
    await answer(chain, control)
    assert (first.calls, second.calls) == (1, 2)  # not retried while cooling down
    assert control.served_by == second.info

    clock.now += 2
    first.fail = False
    control = CallControl()
    await answer(chain, control)
    assert (first.calls, second.calls) == (2, 2)  # back first once the cooldown is over
    assert control.served_by == first.info
    assert len(switches) == 1


async def test_a_cooling_engine_is_still_the_last_resort():
    clock = Clock()
    first, second = FakeLLM("first", fail=True), FakeLLM("second")
    chain, _ = llm_chain(first, second, clock=clock)
    await answer(chain)
    first.fail, second.fail = False, True
    control = CallControl()
    text, _ = await answer(chain, control)
    assert text == "fine thanks " and control.served_by == first.info


async def test_when_every_engine_fails_the_last_error_and_its_code_are_raised():
    chain, _ = llm_chain(FakeLLM("first", fail=True), FakeLLM("second", fail=True))
    with pytest.raises(EngineError) as raised:
        await answer(chain)
    assert raised.value.code == "engine_unreachable"
    assert "second is down" in str(raised.value)


async def test_every_attempts_tokens_are_metered_and_the_callers_cancel_reaches_the_engine():
    first, second = FakeLLM("first", fail=True), FakeLLM("second", reply="a b c d")
    chain, _ = llm_chain(first, second)
    request = GenerationRequest([ChatMessage("user", "hi")])
    pieces = []
    async for piece in chain.stream(request):
        pieces.append(piece)
        request.cancel.set()  # the student barged in after the first word
    assert pieces == ["a "]
    assert second.requests[0].cancel.is_set()
    assert request.usage.prompt_tokens == 20  # both attempts read the prompt
    assert request.usage.completion_tokens == 1


def test_engine_errors_carry_a_machine_readable_code():
    assert EngineError("boom").code == "engine_error"
    assert EngineError("slow down", code="engine_throttled").code == "engine_throttled"


class FakeSTT(SpeechToText):
    def __init__(self, name: str, *, fail: bool = False, stall: bool = False) -> None:
        self.info = EngineInfo("stt", name, "m")
        self.fail, self.stall, self.calls = fail, stall, 0

    async def transcribe(self, audio: np.ndarray, *, partial: bool = False) -> Transcription:
        self.calls += 1
        if self.fail:
            raise EngineError("no")
        if self.stall:
            await asyncio.Event().wait()
        return Transcription(self.info.provider, len(audio) * 1000 // 16_000)


async def test_speech_to_text_chain_switches_on_error_and_on_deadline():
    switches: list[str] = []
    engines = [FakeSTT("broken", fail=True), FakeSTT("stalled", stall=True), FakeSTT("good")]
    stt = FallbackSTT(
        engines,
        on_fallback=lambda kind, a, b, reason: switches.append(f"{a.provider}>{b.provider}:{reason}"),
    )
    control = CallControl()
    asyncio.get_running_loop().call_later(0.05, control.switch.set)
    with call_scope(control):
        result = await asyncio.wait_for(stt.transcribe(np.zeros(16_000, dtype=np.float32)), 5)
    assert result.text == "good" and control.served_by == stt.engines[2].info
    assert switches == ["broken>stalled:error", "stalled>good:deadline"]


class FakeTTS(TextToSpeech):
    sample_rate = 16_000

    def __init__(self, name: str, *, fail: bool = False) -> None:
        self.info = EngineInfo("tts", name, "m")
        self.fail = fail

    async def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[SynthesizedAudio]:
        if self.fail:
            raise EngineError("no voice")
        yield SynthesizedAudio(bytes(320), self.sample_rate)


async def test_text_to_speech_chain_speaks_with_the_next_voice_when_one_fails():
    tts = FallbackTTS([FakeTTS("broken", fail=True), FakeTTS("good")])
    control = CallControl()
    with call_scope(control):
        chunks = [c async for c in tts.synthesize("Hello.", VoiceSettings())]
    assert len(chunks) == 1 and control.served_by == tts.engines[1].info
    assert tts.info == EngineInfo("tts", "broken>good", "m>m")


def test_a_chain_of_one_is_the_engine_itself():
    only = FakeTTS("only")
    assert fallback_chain("tts", [only]) is only
    assert isinstance(fallback_chain("tts", [only, FakeTTS("other")]), FallbackTTS)

"""Fake engines for unit tests of pipeline logic. Never the only proof a feature works: the same
behaviours are exercised with the real models in the end-to-end tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np

from models.base import (
    EngineError,
    EngineInfo,
    GenerationRequest,
    LanguageModel,
    SpeechToText,
    SynthesizedAudio,
    TextToSpeech,
    Transcription,
    TurnCompletion,
    VoiceActivityDetector,
    VoiceSettings,
)


class LoudnessVAD(VoiceActivityDetector):
    """Speech is any frame whose samples are not all zero."""

    info = EngineInfo("vad", "fake", "loudness")
    sample_rate = 16_000
    frame_samples = 480

    def is_speech(self, frame: bytes) -> bool:
        return any(frame)


def trailing_silence_s(audio: np.ndarray) -> float:
    """Seconds of digital silence at the end of the audio an engine was given."""
    voiced = np.flatnonzero(audio)
    return (len(audio) - (voiced[-1] + 1 if len(voiced) else 0)) / 16_000


class ScriptedSTT(SpeechToText):
    info = EngineInfo("stt", "fake", "scripted")

    # Punctuated as Whisper does: the turn policy reads a full stop or question mark as "finished".
    def __init__(
        self, text: str = "What is two plus two?", delay_s: float = 0.01, sentence_end: float | None = None
    ) -> None:
        self.text = text
        self.delay_s = delay_s
        self.sentence_end = sentence_end  # the engine's P(a sentence ends after the last word)
        self.calls = 0
        self.seconds: list[float] = []
        self.trailing_silence_s: list[float] = []

    async def transcribe(self, audio: np.ndarray, *, partial: bool = False) -> Transcription:
        self.calls += 1
        self.seconds.append(len(audio) / 16_000)
        self.trailing_silence_s.append(trailing_silence_s(audio))
        await asyncio.sleep(self.delay_s)
        return Transcription(self.text, len(audio) * 1000 // 16_000, self.sentence_end)


class ScriptedLLM(LanguageModel):
    info = EngineInfo("llm", "fake", "scripted")

    def __init__(self, reply: str, *, token_delay_s: float = 0.005, fail: bool = False) -> None:
        self.reply = reply
        self.token_delay_s = token_delay_s
        self.fail = fail
        self.requests: list[GenerationRequest] = []

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        self.requests.append(request)
        request.usage.prompt_tokens = sum(len(m.content.split()) for m in request.messages)
        if self.fail:
            raise EngineError("scripted failure")
        for word in self.reply.split(" "):
            if request.cancel.is_set():
                return
            await asyncio.sleep(self.token_delay_s)
            request.usage.completion_tokens += 1
            yield word + " "


class ToneTTS(TextToSpeech):
    """60 ms of audio per character, so sent audio maps cleanly back to words."""

    info = EngineInfo("tts", "fake", "tone")
    sample_rate = 16_000

    async def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[SynthesizedAudio]:
        await asyncio.sleep(0.001)
        samples = len(text) * 16_000 * 60 // 1000
        yield SynthesizedAudio(np.full(samples, 1000, dtype="<i2").tobytes(), self.sample_rate)


class ScriptedTurn(TurnCompletion):
    """A turn model whose completion score is whatever the test says."""

    info = EngineInfo("turn", "fake", "scripted")

    def __init__(self, score: float) -> None:
        self.score = score
        self.calls = 0
        self.trailing_silence_s: list[float] = []

    async def completion(self, audio: np.ndarray) -> float:
        self.calls += 1
        self.trailing_silence_s.append(trailing_silence_s(audio))
        await asyncio.sleep(0.001)
        return self.score

"""Wrappers that make a real engine slow, stalled or broken on purpose, for budget and fallback
tests. The work, when it happens, is the real engine's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np

from models.base import (
    EngineError,
    GenerationRequest,
    LanguageModel,
    SpeechToText,
    SynthesizedAudio,
    TextToSpeech,
    Transcription,
    VoiceSettings,
)


class SlowSTT(SpeechToText):
    def __init__(self, real: SpeechToText, *, final_delay_s: float) -> None:
        self.real, self.final_delay_s, self.info = real, final_delay_s, real.info

    async def transcribe(self, audio: np.ndarray, *, partial: bool = False) -> Transcription:
        if not partial:
            await asyncio.sleep(self.final_delay_s)
        return await self.real.transcribe(audio, partial=partial)


class SlowLLM(LanguageModel):
    """Delays the first token, then optionally every token; `stall` never answers at all."""

    def __init__(
        self,
        real: LanguageModel,
        *,
        first_delay_s: float = 0.0,
        token_delay_s: float = 0.0,
        stall: bool = False,
        fail: bool = False,
    ) -> None:
        self.real, self.info = real, real.info
        self.first_delay_s, self.token_delay_s, self.stall, self.fail = (
            first_delay_s,
            token_delay_s,
            stall,
            fail,
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        if self.fail:
            raise EngineError("this engine is down")
        if self.stall:  # accepted the request, then silence
            await asyncio.Event().wait()
        await asyncio.sleep(self.first_delay_s)
        async for piece in self.real.stream(request):
            yield piece
            await asyncio.sleep(self.token_delay_s)


class SlowTTS(TextToSpeech):
    def __init__(self, real: TextToSpeech, *, first_delay_s: float = 0.0, fail: bool = False) -> None:
        self.real, self.info, self.sample_rate = real, real.info, real.sample_rate
        self.first_delay_s, self.fail = first_delay_s, fail

    async def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[SynthesizedAudio]:
        if self.fail:
            raise EngineError("this voice is down")
        await asyncio.sleep(self.first_delay_s)
        async for chunk in self.real.synthesize(text, voice):
            yield chunk


def needed_module(name: str):  # type: ignore[no-untyped-def]
    """The module, or a skip where it is not installed; under CI (which installs every extra) a
    missing one fails instead, so a broken install never passes as skipped tests."""
    import importlib
    import os

    import pytest

    if os.environ.get("CI"):
        return importlib.import_module(name)
    return pytest.importorskip(name)

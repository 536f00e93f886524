"""silence: a text-to-speech engine that speaks nothing, at once.

For evaluations and tests of what the tutor says rather than how it sounds: a reply "plays" in
about a millisecond per character, so a whole conversation runs as fast as the language model
while every sentence still travels the real speech, playout and caption path.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.base import EngineInfo, SynthesizedAudio, TextToSpeech, VoiceSettings


class SilenceOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_rate: int = Field(16_000, ge=8_000, le=48_000)
    ms_per_char: float = Field(1.0, ge=0.0, le=100.0)  # how long the silence of each character lasts


class SilenceTTS(TextToSpeech):
    def __init__(self, options: SilenceOptions | None = None, **fields: Any) -> None:
        self.options = options or SilenceOptions(**fields)
        self.sample_rate = self.options.sample_rate
        self.info = EngineInfo("tts", "silence", "silence")

    async def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[SynthesizedAudio]:
        await asyncio.sleep(0)  # a real engine never answers synchronously
        samples = max(1, round(len(text) * self.options.ms_per_char * self.sample_rate / 1000))
        yield SynthesizedAudio(bytes(2 * samples), self.sample_rate)

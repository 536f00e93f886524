"""Short phrases synthesised once at start-up, so a budget miss or a stalled TTS engine never
leaves the student in silence: the filler is already audio when it is needed."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

from models.base import TextToSpeech, VoiceSettings
from pipelines.budgets import APOLOGY, CAP_NOTICE, FILLERS

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CachedSpeech:
    text: str
    pcm16: bytes
    sample_rate: int


class FillerCache:
    def __init__(self) -> None:
        self._fillers: dict[float, list[CachedSpeech]] = {}
        self._apologies: dict[float, CachedSpeech] = {}
        self._cap_notices: dict[float, CachedSpeech] = {}
        self._turn = itertools.count()

    async def prepare(self, tts: TextToSpeech, voices: list[VoiceSettings]) -> None:
        for rate in sorted({v.rate for v in voices}):
            voice = VoiceSettings(rate=rate)
            self._fillers[rate] = [await _speak(tts, text, voice) for text in FILLERS]
            self._apologies[rate] = await _speak(tts, APOLOGY, voice)
            self._cap_notices[rate] = await _speak(tts, CAP_NOTICE, voice)

    def filler(self, voice: VoiceSettings) -> CachedSpeech | None:
        options = self._fillers.get(voice.rate) or next(iter(self._fillers.values()), None)
        if not options:
            return None
        return options[next(self._turn) % len(options)]  # vary it: the same phrase grates

    def apology(self, voice: VoiceSettings) -> CachedSpeech | None:
        return self._apologies.get(voice.rate) or next(iter(self._apologies.values()), None)

    def cap_notice(self, voice: VoiceSettings) -> CachedSpeech | None:
        return self._cap_notices.get(voice.rate) or next(iter(self._cap_notices.values()), None)


async def _speak(tts: TextToSpeech, text: str, voice: VoiceSettings) -> CachedSpeech:
    chunks = [chunk async for chunk in tts.synthesize(text, voice)]
    return CachedSpeech(text, b"".join(c.pcm16 for c in chunks), chunks[0].sample_rate)

"""Audio of the tutor's vetted lines, kept after their first synthesis and reused.

Most first pieces of a reply are vetted lines the plan speaks at once ("Let's work it out
together.", "Here's the idea:", a card's question), and the same lines come back turn after turn
and student after student. Synthesising one again costs the student the wait for the voice engine
(far more than its ~100 ms when other sessions keep the cores busy) and the school the characters;
a line kept as audio is heard at once and costs nothing. Only lines the plan vets are kept, never
the model's words, and the store is bounded: the least recently used line goes first.
"""

from __future__ import annotations

from collections import OrderedDict

from models.base import EngineInfo, SynthesizedAudio, VoiceSettings

MAX_LINES = 256  # about 25 MB of 22 kHz audio at ~2 s a line
MAX_CHARS = 160  # a longer line is rarely said again word for word

# (provider, model, school key, voice, rate, text): a line made on one school's key is never
# heard free by another school's students.
Key = tuple[str, str, str | None, str | None, float, str]


class StockSpeech:
    def __init__(self, max_lines: int = MAX_LINES) -> None:
        self._lines: OrderedDict[Key, tuple[SynthesizedAudio, ...]] = OrderedDict()
        self._max_lines = max_lines

    @staticmethod
    def key(engine: EngineInfo, voice: VoiceSettings, text: str, key_id: str | None = None) -> Key:
        return (engine.provider, engine.model, key_id, voice.voice, voice.rate, text)

    def get(self, key: Key) -> tuple[SynthesizedAudio, ...] | None:
        audio = self._lines.get(key)
        if audio is not None:
            self._lines.move_to_end(key)
        return audio

    def keep(self, key: Key, audio: tuple[SynthesizedAudio, ...]) -> None:
        if not audio or len(key[-1]) > MAX_CHARS:
            return
        self._lines[key] = audio
        self._lines.move_to_end(key)
        while len(self._lines) > self._max_lines:
            self._lines.popitem(last=False)

    def __len__(self) -> int:
        return len(self._lines)

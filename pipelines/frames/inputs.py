"""What a transport feeds the pipeline: audio, text, cancel, repeat, settings."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.frames.base import DataFrame, SystemFrame
from pipelines.frames.values import InterruptReason


@dataclass(frozen=True, slots=True)
class AudioIn(DataFrame):
    """16 kHz mono PCM16 from the student's microphone, stamped with its arrival time."""

    pcm16: bytes
    at: float


@dataclass(frozen=True, slots=True)
class TextIn(DataFrame):
    """A typed message: the accessibility path, and a turn of its own."""

    turn_id: str
    text: str


@dataclass(frozen=True, slots=True)
class RepeatLast(DataFrame):
    """Say the last answer again, as it was heard, without asking the model."""

    turn_id: str
    text: str


@dataclass(frozen=True, slots=True)
class Interrupt(SystemFrame):
    """Stop the reply now: the student spoke, typed, pressed stop or left."""

    reason: InterruptReason


@dataclass(frozen=True, slots=True)
class UpdateSettings(SystemFrame):
    voice_rate: float | None = None

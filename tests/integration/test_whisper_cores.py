"""The real Whisper model on the machine's cores. Its encoder gains from every core it is given,
its decoder (one token at a time through small matrices) is faster on one thread than on two. A
final transcript therefore asks for every core to encode and for one to decode, and the other core
is free for the turn model, which scores the same pause."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from latency_bench.wer import normalise, word_error_rate
from models.scheduling import CpuArbiter, Priority
from tests.speech import short_sentence_clip

pytestmark = pytest.mark.models


class RecordingArbiter(CpuArbiter):
    """Hands out cores as the real arbiter does and notes how many each step asked for."""

    def __init__(self, cores: int) -> None:
        super().__init__(cores)
        self.asked: list[int] = []

    @contextlib.contextmanager
    def hold(self, priority: Priority, want: int = 1) -> Iterator[int]:
        self.asked.append(want)
        with super().hold(priority, want) as granted:
            yield granted


async def test_a_transcript_encodes_on_every_core_and_decodes_on_one(
    real_engines, speech_clips, speech_manifest, monkeypatch
):
    entry, audio = short_sentence_clip(speech_clips, speech_manifest)
    stt = real_engines.stt
    arbiter = RecordingArbiter(cores=2)
    monkeypatch.setattr(stt._worker, "arbiter", arbiter)  # noqa: SLF001 - this engine's steps only
    monkeypatch.setattr(stt._worker, "cores", 2)  # noqa: SLF001 - two cores, as on CI

    result = await stt.transcribe(audio)

    assert arbiter.asked == [2, 1], "the encoder asks for both cores, the decoder for one"
    assert word_error_rate([normalise(entry["transcript"])], [normalise(result.text)]) < 0.5

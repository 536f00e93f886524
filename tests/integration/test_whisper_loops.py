"""The real Whisper model behind its loop guard: when the fast trimmed window runs away (here
forced by a tiny token budget), the clip is transcribed again on Whisper's own 30 s path, and the
student's words come back whole rather than cut or repeated."""

from __future__ import annotations

import pytest

import models.faster_whisper_stt as whisper
from latency_bench.wer import normalise, word_error_rate
from tests.speech import short_sentence_clip

pytestmark = pytest.mark.models


async def test_a_runaway_window_falls_back_to_the_full_path(
    real_engines, speech_clips, speech_manifest, monkeypatch
):
    entry, audio = short_sentence_clip(speech_clips, speech_manifest)
    stt = real_engines.stt
    fast = await stt.transcribe(audio)
    monkeypatch.setattr(whisper, "token_budget", lambda seconds: 3)  # every window now "loops"
    guarded = await stt.transcribe(audio)
    reference = normalise(entry["transcript"])
    assert len(normalise(guarded.text).split()) > 3, "the 30 s path is not bound by the window's budget"
    assert (
        word_error_rate([reference], [normalise(guarded.text)])
        <= word_error_rate([reference], [normalise(fast.text)]) + 0.2
    )

"""The real Whisper model behind its loop guard: when the fast trimmed window runs away (here
forced by a tiny token budget), the clip is transcribed again on Whisper's own 30 s path, and the
student's words come back whole rather than cut or repeated."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

import models.faster_whisper_stt as whisper
from latency_bench.wer import normalise, word_error_rate

pytestmark = pytest.mark.models


def _clip(folder: Path, entry: dict) -> np.ndarray:
    with wave.open(str(folder / entry["file"])) as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768


async def test_a_runaway_window_falls_back_to_the_full_path(
    real_engines, speech_clips, speech_manifest, monkeypatch
):
    # A clip of a few seconds; without ../shared the synthesised sentences are all shorter, and
    # the longest of them does (with a budget of 3 tokens, any window "loops").
    mid = [e for e in speech_manifest if 2.5 <= e["duration_s"] <= 9]
    entry = min(mid, key=lambda e: e["duration_s"]) if mid else max(speech_manifest, key=lambda e: e["duration_s"])
    audio = _clip(speech_clips, entry)
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

"""The answer's first sound is not held back by the silence a voice model puts before it."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pipelines.audio import trim_leading_silence

RATE = 22_050


def _pcm(quiet_ms: int, loud_ms: int, quiet_level: int = 30) -> bytes:
    quiet = np.full(quiet_ms * RATE // 1000, quiet_level, dtype="<i2")
    loud = np.full(loud_ms * RATE // 1000, 4000, dtype="<i2")
    return np.concatenate([quiet, loud]).tobytes()


def test_the_silence_before_the_first_sound_is_cut_to_ten_milliseconds():
    trimmed = trim_leading_silence(_pcm(60, 200), RATE)
    assert len(trimmed) // 2 == (10 + 200) * RATE // 1000


def test_audio_that_starts_loud_or_is_quiet_throughout_is_left_whole():
    assert trim_leading_silence(_pcm(0, 100), RATE) == _pcm(0, 100)
    assert trim_leading_silence(_pcm(300, 0), RATE) == _pcm(300, 0)  # a pause someone meant


@given(st.integers(0, 500), st.integers(0, 300), st.integers(-150, 150))
def test_only_quiet_audio_before_the_first_sound_is_ever_dropped(quiet_ms, loud_ms, level):
    pcm = _pcm(quiet_ms, loud_ms, level)
    trimmed = trim_leading_silence(pcm, RATE)
    assert pcm.endswith(trimmed)
    dropped = np.frombuffer(pcm[: len(pcm) - len(trimmed)], dtype="<i2")
    assert not len(dropped) or np.abs(dropped).max() < 200
    if loud_ms:
        assert len(trimmed) // 2 >= loud_ms * RATE // 1000

"""The student's own speech level, and frames too quiet to be them."""

import numpy as np
import pytest

from pipelines.speech_level import SILENT_DBFS, SpeechLevel, frame_level_dbfs


def _tone(amplitude: float, n: int = 480) -> bytes:
    t = np.arange(n) / 16_000
    return (amplitude * np.sin(2 * np.pi * 200 * t)).astype("<i2").tobytes()


def test_a_frame_level_is_its_mean_power_against_full_scale():
    assert frame_level_dbfs(_tone(32767)) == pytest.approx(-3.0, abs=0.1)  # a full-scale sine
    assert frame_level_dbfs(_tone(327.67)) == pytest.approx(-43.0, abs=0.1)
    assert frame_level_dbfs(bytes(960)) == SILENT_DBFS
    assert frame_level_dbfs(b"") == SILENT_DBFS


def test_nothing_is_too_quiet_before_the_student_has_spoken_a_while():
    level = SpeechLevel(25)
    for _ in range(SpeechLevel.MIN_FRAMES - 1):
        level.heard_speech(-20)
    assert level.reference_dbfs is None and not level.too_quiet(-100)
    level.heard_speech(-20)
    assert level.reference_dbfs == -20


def test_too_quiet_means_more_than_the_margin_below_the_loud_part_of_speech():
    level = SpeechLevel(25)
    # Vowels are loud, the consonants between them far quieter: the level is the vowels'.
    for i in range(100):
        level.heard_speech(-18 if i % 2 else -45)
    assert level.reference_dbfs == pytest.approx(-18)
    assert level.too_quiet(-44) and not level.too_quiet(-42)


def test_the_level_follows_a_student_who_moves_away_from_the_microphone():
    level = SpeechLevel(25, window_frames=50)
    for _ in range(50):
        level.heard_speech(-15)
    assert level.too_quiet(-45)
    for _ in range(50):
        level.heard_speech(-30)
    assert not level.too_quiet(-45)


def test_a_caller_may_ask_with_a_wider_margin():
    level = SpeechLevel(25)
    for _ in range(20):
        level.heard_speech(-18)
    assert level.too_quiet(-48) and not level.too_quiet(-48, margin_db=35)

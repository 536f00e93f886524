from pipelines.config import TurnConfig
from pipelines.turn_detection import TurnDetector, TurnSignal


def _run(pattern: str, **config) -> list[tuple[int, TurnSignal]]:
    """pattern: one character per 30 ms frame, '#' voiced, '.' silent."""
    detector = TurnDetector(TurnConfig(**config))
    return [(i, s) for i, c in enumerate(pattern) if (s := detector.process(c == "#"))]


def test_speech_starts_after_enough_voiced_frames_and_ends_after_the_silence():
    signals = _run("...." + "#" * 20 + "." * 25, end_of_turn_silence_ms=600, speculation_silence_ms=240)
    assert [s for _, s in signals] == [TurnSignal.SPEECH_START, TurnSignal.PAUSE, TurnSignal.END_OF_TURN]
    assert signals[1][0] == 4 + 20 + 7  # 8 silent frames = 240 ms
    assert signals[2][0] == 4 + 20 + 19  # 20 silent frames = 600 ms


def test_a_click_is_not_speech():
    assert _run("..##...#....#..") == []


def test_a_pause_shorter_than_the_end_of_turn_resumes_the_same_turn():
    signals = [s for _, s in _run("#" * 10 + "." * 10 + "#" * 10 + "." * 25)]
    assert signals == [
        TurnSignal.SPEECH_START,
        TurnSignal.PAUSE,
        TurnSignal.RESUME,
        TurnSignal.PAUSE,
        TurnSignal.END_OF_TURN,
    ]


def test_a_lone_noisy_frame_in_the_pause_does_not_resume_the_turn():
    signals = [s for _, s in _run("#" * 10 + "." * 9 + "#" + "." * 12)]
    assert signals == [TurnSignal.SPEECH_START, TurnSignal.PAUSE, TurnSignal.END_OF_TURN]


def test_a_patient_turn_setting_waits_longer():
    quick = _run("#" * 10 + "." * 20, end_of_turn_silence_ms=300)
    patient = _run("#" * 10 + "." * 20, end_of_turn_silence_ms=800)
    assert quick[-1][1] is TurnSignal.END_OF_TURN
    assert TurnSignal.END_OF_TURN not in [s for _, s in patient]

"""The browser benchmark's ruler: from the microphone's last speech before the reply to the
reply's first sound, on the page's audio clock."""

from __future__ import annotations

from latency_bench.browser import measure

BLOCK_S = 128 / 48_000


def _levels(near: list[float], far: list[float]) -> list[list[float]]:
    return [[i * BLOCK_S, n, f] for i, (n, f) in enumerate(zip(near, far, strict=True))]


def test_voice_to_answer_runs_from_the_last_spoken_block_to_the_first_reply_block():
    near = [-20.0] * 100 + [-70.0] * 200
    far = [-120.0] * 250 + [-15.0] * 50
    assert measure(_levels(near, far)) == round(150 * BLOCK_S * 1000, 1)


def test_a_noise_floor_lifted_by_the_browsers_gain_control_is_not_taken_for_speech():
    # After the clip, chromium's gain control lifts the silence to about -40 dBFS, during the
    # reply too: the student stopped talking where the clip did.
    near = [-20.0] * 100 + [-60.0] * 100 + [-40.0] * 100
    far = [-120.0] * 150 + [-15.0] * 150
    assert measure(_levels(near, far)) == round(50 * BLOCK_S * 1000, 1)


def test_no_reply_or_no_speech_gives_no_figure():
    assert measure(_levels([-20.0] * 10, [-120.0] * 10)) is None
    assert measure(_levels([-70.0] * 10, [-15.0] * 10)) is None

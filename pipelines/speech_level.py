"""The student's own speech level, and the quiet that cannot be the student speaking.

webrtcvad judges each frame by its spectrum, not its loudness, so noise that is merely amplified
reads as speech. A browser does exactly that once the student stops: its automatic gain control
lifts the silence after speech steadily, in chromium from about -70 to -45 dBFS over 5 s, and the
detector hears that rising hiss as the student going on: played through chromium's microphone,
some clips were answered 5-9 s after their speech ended.

Speech is far louder than that hiss (its loud frames sit around -15 to -25 dBFS), so a frame
much quieter than the student's own recent speech is not speech, whatever the detector says.
The gate is only asked whether speech *starts or resumes* (the endpointing stage asks once a pause
has lasted a little): a pause's quiet frames then cannot keep a turn open, while the soft ends of
words inside a sentence are never cut.
"""

from __future__ import annotations

from collections import deque

import numpy as np

SILENT_DBFS = -120.0  # the level of digital silence, so every frame has a finite level


def frame_level_dbfs(pcm16: bytes) -> float:
    """Mean power of a PCM16 frame, in dB relative to full scale."""
    samples = np.frombuffer(pcm16, dtype="<i2").astype(np.float64)
    if not len(samples):
        return SILENT_DBFS
    power = float(np.mean(samples * samples)) / (32768.0 * 32768.0)
    return max(SILENT_DBFS, 10.0 * np.log10(power + 1e-12))


class SpeechLevel:
    """Tracks how loud this student speaks and says which frames are too quiet to be them.

    The level is a high percentile of the frames heard as speech in the last `window_frames`
    (vowels, not the quiet consonants between them), so it follows a student who moves closer
    to or away from the microphone, and one noisy frame does not move it.
    """

    def __init__(self, margin_db: float, *, window_frames: int = 300, percentile: float = 90.0) -> None:
        self.margin_db = margin_db
        self.percentile = percentile
        self._levels: deque[float] = deque(maxlen=window_frames)
        self._reference: float | None = None

    MIN_FRAMES = 10  # ~300 ms of speech before the level is trusted

    @property
    def reference_dbfs(self) -> float | None:
        return self._reference

    def heard_speech(self, level_dbfs: float) -> None:
        """A frame the student spoke: part of their level from now on."""
        self._levels.append(level_dbfs)
        if len(self._levels) >= self.MIN_FRAMES:
            self._reference = float(np.percentile(self._levels, self.percentile))

    def too_quiet(self, level_dbfs: float, margin_db: float | None = None) -> bool:
        """True when a frame is more than the margin (by default the tracker's own) below the
        student's speech; never before their level is known."""
        margin = self.margin_db if margin_db is None else margin_db
        return self._reference is not None and level_dbfs < self._reference - margin

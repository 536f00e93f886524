"""Endpointing: turns a stream of VAD decisions into speech start, pause, resume and end of turn.

Pure state machine over fixed-size frames, so it is tested with no audio engine at all. Two silence
thresholds give learners patience without costing latency: at `speculation_silence_ms` the pipeline
may start transcribing (the student has probably finished), and only `end_silence_ms` commits the
turn. That one is the turn policy's to move (pipelines/turn_policy.py): shorter once the student
has clearly finished, longer while they think. Speech resuming in between continues the turn.
"""

from __future__ import annotations

import enum
from collections import deque

from pipelines.config import TurnConfig


class TurnSignal(enum.Enum):
    SPEECH_START = "speech_start"
    PAUSE = "pause"  # silence long enough to speculate
    RESUME = "resume"  # speech again after a PAUSE, same turn
    END_OF_TURN = "end_of_turn"


class TurnDetector:
    def __init__(self, config: TurnConfig) -> None:
        self.config = config
        self._window: deque[bool] = deque(maxlen=config.start_window_frames)
        self.in_speech = False
        self._paused = False
        self._silent_frames = 0
        self._voiced_run = 0
        self.frames_seen = 0
        # Frame index just after the last voiced frame: where the student stopped talking.
        self.last_voiced_end = 0
        self.speech_start_frame = 0
        # The silence that ends the turn now; the turn policy sets it during a pause.
        self.end_silence_ms = config.end_of_turn_silence_ms

    def force_end(self) -> TurnSignal:
        """End the turn now (e.g. an utterance over the length limit)."""
        self.in_speech = False
        self._paused = False
        self._window.clear()
        return TurnSignal.END_OF_TURN

    @property
    def paused(self) -> bool:
        """In a turn, silent for at least the speculation silence: speech now would resume it."""
        return self.in_speech and self._paused

    @property
    def silence_ms(self) -> int:
        return self._silent_frames * self.config.frame_ms

    def process(self, voiced: bool) -> TurnSignal | None:
        cfg = self.config
        self.frames_seen += 1
        self._window.append(voiced)
        if not self.in_speech:
            if sum(self._window) >= cfg.start_voiced_frames:
                self.in_speech = True
                self._paused = False
                self._silent_frames = 0
                self.last_voiced_end = self.frames_seen
                first_voiced = self.frames_seen - len(self._window) + self._window.index(True)
                self.speech_start_frame = first_voiced
                self._window.clear()
                return TurnSignal.SPEECH_START
            return None

        if voiced:
            self._voiced_run += 1
            if not self._paused:
                self._silent_frames = 0
                self.last_voiced_end = self.frames_seen
                return None
            if self._voiced_run >= cfg.resume_voiced_frames:
                self._paused = False
                self._silent_frames = 0
                self.last_voiced_end = self.frames_seen
                return TurnSignal.RESUME
        else:
            self._voiced_run = 0

        self._silent_frames += 1
        silence = self.silence_ms
        if silence >= self.end_silence_ms:
            self.in_speech = False
            self._paused = False
            self._window.clear()
            return TurnSignal.END_OF_TURN
        if not self._paused and silence >= cfg.speculation_silence_ms:
            self._paused = True
            return TurnSignal.PAUSE
        return None

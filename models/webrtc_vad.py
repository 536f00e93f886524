"""webrtcvad voice-activity detection: about 3 microseconds per 30 ms frame, so it runs inline.

A webrtcvad.Vad has memory, so every audio stream gets its own (`new_stream`)."""

from __future__ import annotations

from models.base import EngineInfo, VoiceActivityDetector
from models.locate import require_module


class WebRtcVad(VoiceActivityDetector):
    def __init__(self, aggressiveness: int = 2, *, frame_ms: int = 30) -> None:
        require_module("webrtcvad", "webrtcvad", "pip install webrtcvad-wheels")
        import webrtcvad

        if frame_ms not in (10, 20, 30):
            raise ValueError("webrtcvad frames must be 10, 20 or 30 ms")
        self.aggressiveness = aggressiveness
        self.frame_ms = frame_ms
        self.info = EngineInfo("vad", "webrtcvad", f"mode-{aggressiveness}")
        self.sample_rate = 16_000
        self.frame_samples = self.sample_rate * frame_ms // 1000
        self._vad = webrtcvad.Vad(aggressiveness)

    def new_stream(self) -> WebRtcVad:
        # webrtcvad adapts to the stream it hears and holds speech over for a few frames.
        return WebRtcVad(self.aggressiveness, frame_ms=self.frame_ms)

    def is_speech(self, frame: bytes) -> bool:
        return bool(self._vad.is_speech(frame, self.sample_rate))

"""webrtcvad voice-activity detection: about 3 microseconds per 30 ms frame, so it runs inline.

A webrtcvad.Vad has memory, so every audio stream gets its own (`new_stream`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.base import EngineInfo, VoiceActivityDetector
from models.locate import require_module


class WebRtcVadOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    aggressiveness: int = Field(2, ge=0, le=3)  # 3 calls the least audio speech
    frame_ms: int = 30

    @field_validator("frame_ms")
    @classmethod
    def _webrtcvad_frame(cls, frame_ms: int) -> int:
        if frame_ms not in (10, 20, 30):
            raise ValueError("webrtcvad frames must be 10, 20 or 30 ms")
        return frame_ms


class WebRtcVad(VoiceActivityDetector):
    def __init__(self, options: WebRtcVadOptions | None = None, **fields: Any) -> None:
        require_module("webrtcvad", "webrtcvad", "pip install webrtcvad-wheels")
        import webrtcvad

        self.options = options or WebRtcVadOptions(**fields)
        self.aggressiveness = aggressiveness = self.options.aggressiveness
        self.frame_ms = frame_ms = self.options.frame_ms
        self.info = EngineInfo("vad", "webrtcvad", f"mode-{aggressiveness}")
        self.sample_rate = 16_000
        self.frame_samples = self.sample_rate * frame_ms // 1000
        self._vad = webrtcvad.Vad(aggressiveness)

    def new_stream(self) -> WebRtcVad:
        # webrtcvad adapts to the stream it hears and holds speech over for a few frames.
        return WebRtcVad(self.options)

    def is_speech(self, frame: bytes) -> bool:
        return bool(self._vad.is_speech(frame, self.sample_rate))

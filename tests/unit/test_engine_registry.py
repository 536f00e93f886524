"""Each engine is one adapter module plus one registry entry, which names its own options model:
options are validated (from settings, when they load) against that model alone, and a missing
backend names the command that installs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from models.base import ModelNotInstalledError
from models.registry import ENGINES, EngineOptionsError, EngineSpec, spec_for
from voice_server.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_options_are_validated_against_the_engines_own_model():
    options = spec_for("llm", "llama-cpp").validate_options({"contexts": "4", "batch-threads": 3})
    assert (options.contexts, options.batch_threads, options.threads) == (4, 3, 1)


def test_an_engine_gets_its_own_defaults_and_no_other_kinds_options():
    stt = spec_for("stt", "faster-whisper").validate_options(None)
    assert stt.threads == 2 and stt.trim_window is True
    with pytest.raises(EngineOptionsError, match="faster-whisper.*unknown option 'contexts'"):
        spec_for("stt", "faster-whisper").validate_options({"contexts": 8})


def test_an_unknown_option_names_the_engine_and_the_options_it_has():
    with pytest.raises(EngineOptionsError) as raised:
        spec_for("llm", "llama-cpp").validate_options({"contextz": 8})
    message = str(raised.value)
    assert "'llama-cpp'" in message and "'contextz'" in message and "contexts" in message


def test_a_bad_value_names_the_engine_and_the_option():
    with pytest.raises(EngineOptionsError, match=r"'llama-cpp'.*option 'contexts'.*greater than or equal"):
        spec_for("llm", "llama-cpp").validate_options({"contexts": 0})


def test_settings_read_per_engine_options_from_the_environment(monkeypatch):
    monkeypatch.setenv("CONVERGIO_ENGINES__OPTIONS__LLAMA_CPP__CONTEXTS", "3")
    monkeypatch.setenv("CONVERGIO_ENGINES__OPTIONS__WEBRTCVAD__AGGRESSIVENESS", "3")
    engines = Settings().engines
    assert engines.options_for("llama-cpp").contexts == 3
    assert engines.options_for("webrtcvad").aggressiveness == 3
    assert engines.options_for("piper").threads == 2  # untouched engines keep their defaults


def test_settings_refuse_a_bad_engine_option_when_they_load(monkeypatch):
    monkeypatch.setenv("CONVERGIO_ENGINES__OPTIONS__LLAMA_CPP__THREADZ", "3")
    with pytest.raises(ValidationError, match=r"llm engine 'llama-cpp': unknown option 'threadz'"):
        Settings()


def test_settings_refuse_options_for_an_engine_that_does_not_exist(monkeypatch):
    monkeypatch.setenv("CONVERGIO_ENGINES__OPTIONS__WHISPER_XXL__THREADS", "3")
    with pytest.raises(ValidationError, match="unknown engine 'whisper_xxl'"):
        Settings()


def test_settings_refuse_an_unknown_engine_or_fallback(monkeypatch):
    monkeypatch.setenv("CONVERGIO_ENGINES__LLM_FALLBACK", "llama-cpp,nope")
    with pytest.raises(ValidationError, match="unknown llm engine 'nope'"):
        Settings()


def test_a_fallback_chain_is_the_chosen_engine_then_its_fallbacks(monkeypatch):
    monkeypatch.setenv("CONVERGIO_ENGINES__LLM_FALLBACK", "llama-cpp, llama-cpp")
    assert Settings().engines.chain("llm") == ["llama-cpp", "llama-cpp", "llama-cpp"]
    assert Settings().engines.chain("vad") == ["webrtcvad"]


def test_a_missing_backend_names_the_install_command_and_the_extra():
    spec = EngineSpec(
        "tts",
        "imaginary",
        "models.piper_tts:PiperTTS",
        "models.piper_tts:PiperOptions",
        "Imaginary voice",
        "pip install imaginary-voice",
        requires=("imaginary_voice_package_xyz",),
        extra="imaginary",
    )
    with pytest.raises(ModelNotInstalledError) as raised:
        spec.load()
    assert "pip install imaginary-voice" in str(raised.value)
    assert "convergio-voice[imaginary]" in str(raised.value)
    assert "imaginary_voice_package_xyz" in str(raised.value)


def test_every_entry_says_where_it_runs_and_what_it_needs():
    for specs in ENGINES.values():
        for spec in specs.values():
            assert spec.options_model().model_config.get("extra") == "forbid", spec.name
            assert isinstance(spec.local, bool)
            assert not spec.requires or spec.install, spec.name


def test_reading_the_registry_and_options_imports_no_backend_package():
    code = (
        "import sys, models.registry as r\n"
        "[s.options_model() for k in r.ENGINES.values() for s in k.values()]\n"
        "loaded = {'llama_cpp', 'faster_whisper', 'piper', 'onnxruntime', 'webrtcvad', 'ctranslate2'}\n"
        "print(sorted(loaded & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_turn_model_is_an_engine_kind_with_its_own_options_and_extra():
    spec = spec_for("turn", "smart-turn")
    assert spec.extra == "smart-turn" and spec.local and "pipecat" in spec.requires
    assert spec.validate_options({"threads": 2}).threads == 2
    with pytest.raises(EngineOptionsError, match="smart-turn.*unknown option"):
        spec.validate_options({"window": 8})


def test_a_missing_turn_model_names_the_extra(monkeypatch, tmp_path):
    from models import smart_turn

    monkeypatch.setattr(smart_turn.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotInstalledError, match="smart-turn"):
        smart_turn.bundled_model_path()


def test_the_turn_model_may_be_turned_off_but_not_misnamed(monkeypatch):
    monkeypatch.setenv("CONVERGIO_ENGINES__TURN", "none")
    assert Settings().engines.turn == "none"
    monkeypatch.setenv("CONVERGIO_ENGINES__TURN", "smartturn-typo")
    with pytest.raises(ValidationError, match="unknown turn engine"):
        Settings()

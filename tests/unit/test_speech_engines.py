"""The speech engines of issue 12 that need no model and no network: Azure Speech's options, error
mapping, SSML and privacy refusal; MLX's clear error off Apple silicon; Silero's options and the
registry entries; the doctor's report. Real calls (Silero on real speech, the Azure SDK against
unreachable endpoints, fallback turns, the doctor command) are in
tests/integration/test_speech_engines_real.py."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from models.base import EngineError, ModelNotInstalledError, VoiceSettings
from models.registry import EngineOptionsError, spec_for
from tests.wrappers import needed_module
from voice_server.settings import Settings

AZURE = {"region": "westeurope", "key": "0123456789abcdef-secret-key"}


# ---------------------------------------------------------------------------------- Azure: options


@pytest.mark.parametrize("name", ["azure-stt", "azure-tts"])
def test_azure_engines_are_registered_as_remote_with_the_azure_extra(name):
    spec = spec_for(name.split("-")[1], name)
    assert spec.local is False and spec.extra == "azure"
    assert spec.requires == ("azure.cognitiveservices.speech",)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"key": "k" * 32}, "option 'region' is required"),
        ({"region": "westeurope"}, "option 'key' is required"),
        ({"region": "westeurope", "key": "k", "token": "t"}, "only one of the options"),
        ({"region": "West Europe", "key": "k"}, "option 'region'"),
        ({"endpoint": "ftp://x", "key": "k"}, "option 'endpoint'"),
        ({**AZURE, "colour": "blue"}, "unknown option 'colour'"),
    ],
)
def test_azure_options_that_do_not_validate_name_the_option(options, named):
    with pytest.raises(EngineOptionsError, match=named) as caught:
        spec_for("stt", "azure-stt").validate_options(options)
    assert "stt engine 'azure-stt'" in str(caught.value)


def test_azure_configured_without_options_fails_when_settings_load_naming_the_env_var():
    with pytest.raises(ValidationError) as caught:
        Settings(engines={"stt": "azure-stt"})
    message = str(caught.value)
    assert "option 'region' is required" in message
    assert "CONVERGIO_ENGINES__OPTIONS__AZURE_STT__" in message


def test_azure_accepts_a_key_a_token_or_a_key_store_id_and_never_shows_a_secret():
    spec = spec_for("tts", "azure-tts")
    for credential in ({"key": "0123456789abcdef-secret-key"}, {"token": "aad#res#0123456789abcdef-secret-key"},
                       {"key_id": "school-42"}):
        options = spec.validate_options({"region": "westeurope", **credential})
        assert "0123456789abcdef-secret-key" not in repr(options) + str(options)
    settings = Settings(engines={"tts": "azure-tts", "options": {"azure_tts": AZURE}})
    assert "secret-key" not in repr(settings) + str(settings.engines.options_for("azure-tts"))
    with pytest.raises(ValidationError) as caught:  # an error in another option shows no key
        Settings(engines={"tts": "azure-tts", "options": {"azure_tts": {**AZURE, "sample_rate": 12345}}})
    assert "sample_rate" in str(caught.value) and "secret-key" not in str(caught.value)


def test_a_key_store_id_without_the_key_store_fails_clearly_at_load():
    needed_module("azure.cognitiveservices.speech")
    from models import azure_speech

    with pytest.raises(ValueError, match="key store"):
        azure_speech.AzureSTT(region="westeurope", key_id="school-42")
    azure_speech.set_key_resolver({"school-42": "k" * 32}.__getitem__)
    try:
        assert azure_speech.AzureSTT(region="westeurope", key_id="school-42").info.provider == "azure"
        with pytest.raises(ValueError, match="no key 'other'"):
            azure_speech.AzureSTT(region="westeurope", key_id="other")
    finally:
        azure_speech.set_key_resolver(None)


# ---------------------------------------------------------------------------- Azure: error mapping


def test_every_sdk_cancellation_code_maps_to_a_project_error_code():
    sdk = needed_module("azure.cognitiveservices.speech")
    from models.azure_speech import map_cancellation

    expected = {
        "AuthenticationFailure": "engine_auth",
        "Forbidden": "engine_quota",
        "TooManyRequests": "engine_throttled",
        "ConnectionFailure": "engine_unreachable",
        "ServiceTimeout": "engine_unreachable",
        "ServiceUnavailable": "engine_unreachable",
        "BadRequest": "engine_error",
        "ServiceError": "engine_error",
        "RuntimeError": "engine_error",
    }
    for member in sdk.CancellationErrorCode:
        error = map_cancellation(member, "WebSocket upgrade failed: 401\nmore", engine="azure-stt")
        assert isinstance(error, EngineError)
        assert error.code == expected.get(member.name, "engine_error"), member
        assert str(error).startswith(f"azure-stt: {member.name}: WebSocket upgrade failed")
        assert "more" not in str(error)  # one line, for logs and teachers
    assert set(expected) <= {m.name for m in sdk.CancellationErrorCode}  # the SDK's real names


# ------------------------------------------------------------------------------- Azure: synthesis


def test_azure_tts_speaks_the_personas_voice_and_rate_in_ssml():
    needed_module("azure.cognitiveservices.speech")
    from models.azure_speech import AzureTTS

    tts = AzureTTS(**AZURE, voices={"tutor-maths": "en-GB-RyanNeural"})
    ssml = tts.ssml("Is 3 < 4 & 5 > 2?", VoiceSettings(rate=1.05))
    assert '<voice name="en-US-JennyNeural">' in ssml and 'xml:lang="en-US"' in ssml
    assert '<prosody rate="+5%">' in ssml and "3 &lt; 4 &amp; 5 &gt; 2?" in ssml
    assert 'name="en-GB-RyanNeural"' in tts.ssml("Hi", VoiceSettings(voice="tutor-maths", rate=0.9))
    assert 'rate="-10%"' in tts.ssml("Hi", VoiceSettings(voice="tutor-maths", rate=0.9))
    assert 'name="de-DE-KatjaNeural"' in tts.ssml("Hallo", VoiceSettings(voice="de-DE-KatjaNeural"))
    assert 'xml:lang="de-DE"' in tts.ssml("Hallo", VoiceSettings(voice="de-DE-KatjaNeural"))


# ---------------------------------------------------------------------------------- privacy mode


@pytest.mark.parametrize(("kind", "name"), [("stt", "azure-stt"), ("tts", "azure-tts")])
def test_privacy_mode_refuses_azure_naming_the_engine(kind, name):
    engines = {kind: name, "options": {name: AZURE}}
    assert Settings(engines=engines).engines.chain(kind)[0] == name  # fine without privacy mode
    with pytest.raises(ValidationError, match=f"privacy mode allows only engines .*refused: {kind} engine '{name}'"):
        Settings(privacy={"mode": True}, engines=engines)


def test_privacy_mode_refuses_azure_as_a_fallback_too():
    engines = {"stt_fallback": "azure-stt", "options": {"azure_stt": AZURE}}
    with pytest.raises(ValidationError, match="refused: stt engine 'azure-stt'"):
        Settings(privacy={"mode": True}, engines=engines)


# ----------------------------------------------------------------------------------------- MLX


def test_mlx_off_apple_silicon_says_so_and_names_the_alternatives():
    from models import mlx_llm

    if mlx_llm.is_apple_silicon():
        pytest.skip("this machine is Apple silicon")
    spec = spec_for("llm", "mlx")
    options = spec.validate_options({"model": "/models/some-mlx-model"})
    with pytest.raises(ModelNotInstalledError) as caught:
        spec.load(options)
    message = str(caught.value)
    assert "needs Apple silicon" in message
    for alternative in ("llama-cpp", "ollama", "openai-compatible"):
        assert alternative in message
    with pytest.raises(ModelNotInstalledError, match="needs Apple silicon"):
        mlx_llm.MlxLLM(model="/models/some-mlx-model")  # the adapter itself checks first, too
    # Configurable anywhere (one settings file for a fleet), refused only where it would run.
    assert Settings(engines={"llm": "mlx", "options": {"mlx": {"model": "/m"}}}).engines.llm == "mlx"
    with pytest.raises(ValidationError, match="llm engine 'mlx': option 'model'"):
        Settings(engines={"llm": "mlx"})


# -------------------------------------------------------------------------------------- Silero


def test_silero_is_a_local_vad_with_validated_options():
    spec = spec_for("vad", "silero")
    assert spec.local and spec.extra == "silero" and "--no-deps" in spec.install
    assert spec.validate_options({}).frame_ms == 30
    with pytest.raises(EngineOptionsError, match="frame_ms"):
        spec.validate_options({"frame_ms": 32})
    with pytest.raises(EngineOptionsError, match="neg_threshold"):
        spec.validate_options({"threshold": 0.4, "neg_threshold": 0.6})
    assert Settings(engines={"vad": "silero"}).engines.vad == "silero"


def test_a_missing_silero_model_names_the_no_deps_install(monkeypatch):
    import importlib.util

    from models import silero_vad

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "silero_vad" else real(n, *a))
    with pytest.raises(ModelNotInstalledError, match="--no-deps 'silero-vad>=6'"):
        silero_vad.silero_onnx()
    with pytest.raises(ModelNotInstalledError, match="--no-deps"):
        spec_for("vad", "silero").check_installed()


# -------------------------------------------------------------------------------------- doctor


def test_doctor_report_names_refused_unreachable_and_missing_engines():
    from voice_server.doctor import EngineReport, render

    reports = [
        EngineReport("stt", "azure-stt", False, "Azure", True, True, reachable=False,
                     error="azure-stt: ConnectionFailure: refused", error_code="engine_unreachable"),
        EngineReport("stt", "faster-whisper", True, "whisper", True, True, loaded_s=1.0,
                     probe="0.5 s of silence", probe_s=0.2, reachable=True),
        EngineReport("llm", "mlx", True, "MLX", False, False, install_problem="needs Apple silicon"),
        EngineReport("tts", "azure-tts", False, "Azure", True, True, refused=True),
    ]
    text = render(reports, privacy_mode=True)
    assert "UNREACHABLE [engine_unreachable]: azure-stt: ConnectionFailure" in text
    assert "probe (0.5 s of silence) 200 ms" in text
    assert "MISSING: needs Apple silicon" in text
    assert "REFUSED by privacy mode" in text
    assert "privacy mode: only local engines; refused: stt azure-stt, tts azure-tts" in text
    assert "2 configured engine(s) cannot run: stt azure-stt, tts azure-tts" in text

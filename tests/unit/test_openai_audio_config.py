"""The openai-stt and openai-tts engines without a server: configuration, privacy mode by where
`base_url` points, the request each sends, the WAV going out and the WAV stream coming in, and
the mapping of the HTTP client's own errors. (Against a server: tests/integration/
test_openai_audio_engines.py and tests/e2e/test_audio_server_turn.py.)"""

from __future__ import annotations

import io
import struct
import wave

import numpy as np
import pytest
from pydantic import ValidationError

from models.base import VoiceSettings
from models.openai_audio import WavStream, _error, wav_bytes
from models.registry import spec_for
from voice_server.settings import Settings

KEY = "sk-school-audio-key-1a2b3c4d5e6f"
LOOPBACK = "http://127.0.0.1:8000/v1"
GPU_BOX = "http://gpu-box.school.lan:8000/v1"


def configured(kind: str, privacy: bool = False, **options) -> Settings:
    name = f"openai-{kind}"
    return Settings(engines={kind: name, "options": {name: {"model": "m", **options}}}, privacy={"mode": privacy})


@pytest.mark.parametrize("kind", ["stt", "tts"])
def test_privacy_mode_allows_a_loopback_server_and_refuses_another_naming_the_engine(kind):
    for url in (LOOPBACK, "http://localhost:8000/v1", "http://[::1]:8000/v1"):
        assert configured(kind, True, base_url=url).privacy.mode
    for options in ({"base_url": GPU_BOX}, {"base_url": "https://api.openai.com/v1", "api_key": KEY},
                    {"base_url": LOOPBACK, "local": False}):  # a loopback tunnel to another machine
        assert configured(kind, **options)  # fine without privacy mode
        with pytest.raises(ValidationError) as refused:
            configured(kind, True, **options)
        message = str(refused.value)
        assert "privacy mode allows only engines that run on this machine" in message
        assert f"{kind} engine 'openai-{kind}'" in message and KEY not in message


def test_local_true_is_refused_for_a_server_elsewhere_and_required_options_are_named():
    with pytest.raises(ValidationError, match="local=true needs a server on this machine"):
        configured("stt", base_url=GPU_BOX, local=True)
    with pytest.raises(ValidationError) as missing:
        Settings(engines={"tts": "openai-tts"})
    message = str(missing.value)
    assert "'base_url'" in message and "'model'" in message
    assert "CONVERGIO_ENGINES__OPTIONS__OPENAI_TTS__<OPTION>" in message
    with pytest.raises(ValidationError, match="sample_rate must be one of"):
        configured("tts", base_url=LOOPBACK, sample_rate=12_345)
    with pytest.raises(ValidationError, match="response_format"):
        configured("tts", base_url=LOOPBACK, response_format="mp3")


def test_environment_variables_configure_both_engines_and_the_key_stays_secret(monkeypatch):
    env = {
        "CONVERGIO_ENGINES__STT": "openai-stt",
        "CONVERGIO_ENGINES__TTS": "openai-tts",
        "CONVERGIO_ENGINES__OPTIONS__OPENAI_STT__BASE_URL": GPU_BOX,
        "CONVERGIO_ENGINES__OPTIONS__OPENAI_STT__MODEL": "Systran/faster-whisper-small",
        "CONVERGIO_ENGINES__OPTIONS__OPENAI_STT__API_KEY": KEY,
        "CONVERGIO_ENGINES__OPTIONS__OPENAI_TTS__BASE_URL": GPU_BOX,
        "CONVERGIO_ENGINES__OPTIONS__OPENAI_TTS__MODEL": "speaches-ai/Kokoro-82M-v1.0-ONNX",
        "CONVERGIO_ENGINES__OPTIONS__OPENAI_TTS__VOICE": "af_heart",
        "CONVERGIO_ENGINES__OPTIONS__OPENAI_TTS__SAMPLE_RATE": "24000",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    stt, tts = settings.engines.options_for("openai-stt"), settings.engines.options_for("openai-tts")
    assert (stt.model, stt.language, stt.api_key.get_secret_value()) == ("Systran/faster-whisper-small", "en", KEY)
    assert (tts.voice, tts.response_format, tts.sample_rate) == ("af_heart", "pcm", 24_000)
    assert KEY not in repr(settings) and KEY not in str(stt)
    assert not spec_for("stt", "openai-stt").runs_locally(stt)


def test_the_speech_request_carries_the_personas_voice_and_rate():
    engine = spec_for("tts", "openai-tts").load(
        {"base_url": LOOPBACK, "model": "tts-1", "voice": "nova", "voices": {"tutor-history": "fable"}}
    )
    assert engine.request("Hello.", VoiceSettings()) == {
        "model": "tts-1", "input": "Hello.", "voice": "nova", "response_format": "pcm",
    }
    slow = engine.request("Hello.", VoiceSettings(voice="tutor-history", rate=0.9))
    assert (slow["voice"], slow["speed"]) == ("fable", 0.9)
    assert engine.request("Hi", VoiceSettings(voice="unknown", rate=9.0))["speed"] == 2.0  # clamped
    assert (engine.info.kind, engine.info.provider, engine.info.model, engine.sample_rate) == (
        "tts", "openai-tts", "tts-1", 24_000)


def test_audio_goes_out_as_16_khz_wav_exactly_as_the_pipeline_read_it():
    pcm = np.array([-32768, -1, 0, 1, 12345, 32767], dtype="<i2")
    audio = pcm.astype(np.float32) / 32768  # how pipelines/audio.py reads PCM16
    with wave.open(io.BytesIO(wav_bytes(audio)), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16_000, 1, 2)
        assert np.array_equal(np.frombuffer(wav.readframes(6), dtype="<i2"), pcm)
    loud = wav_bytes(np.array([1.5, -1.5], dtype=np.float32))  # clipped, never wrapped around
    assert np.frombuffer(loud[-4:], dtype="<i2").tolist() == [32767, -32768]


def _wav_header(rate: int, data_size: int, *, channels: int = 1, bits: int = 16, extra: bytes = b"") -> bytes:
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + extra
            + b"data" + struct.pack("<I", data_size))


@pytest.mark.parametrize("piece", [1, 3, 7, 44, 1000])
def test_a_streamed_wav_is_read_in_pieces_of_any_size(piece):
    samples = bytes(range(256)) * 4
    list_chunk = b"LIST" + struct.pack("<I", 5) + b"INFOx" + b"\x00"  # odd size, padded
    stream = _wav_header(22_050, 0xFFFFFFFF, extra=list_chunk) + samples
    reader, out = WavStream(), b""
    for start in range(0, len(stream), piece):
        out += reader.feed(stream[start : start + piece])
    assert out == samples and reader.sample_rate == 22_050
    # A real data size is respected: what follows the data chunk is not audio.
    sized = WavStream()
    assert sized.feed(_wav_header(16_000, 6) + b"abcdefTRAILER") == b"abcdef"
    assert sized.feed(b"more") == b""


def test_a_wav_that_is_not_16_bit_mono_or_not_a_wav_is_refused():
    with pytest.raises(ValueError, match="only 16-bit mono"):
        WavStream().feed(_wav_header(24_000, 0xFFFFFFFF, channels=2))
    with pytest.raises(ValueError, match="not a WAV"):
        WavStream().feed(b"ID3\x04" + bytes(20))  # an mp3


def test_the_http_clients_own_errors_mid_stream_are_mapped_by_their_class():
    # The names httpx and httpx2 both use; the SDK passes them through while a body streams.
    class TransportError(Exception): ...
    class TimeoutException(TransportError): ...
    class ReadTimeout(TimeoutException): ...
    class RemoteProtocolError(TransportError): ...

    assert _error(ReadTimeout(KEY), "openai-tts", "gpu-box:8000", KEY).code == "engine_timeout"
    broken = _error(RemoteProtocolError(KEY), "openai-tts", "gpu-box:8000", KEY)
    assert broken.code == "engine_unreachable" and "gpu-box:8000" in str(broken) and KEY not in str(broken)
    other = _error(RuntimeError(KEY), "openai-stt", "gpu-box:8000", KEY)
    assert other.code == "engine_error" and KEY not in str(other)

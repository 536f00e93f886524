"""The openai-stt and openai-tts engines (models/openai_audio.py) against `OpenAIAudioStandIn`
(tests/audio_servers.py): a STAND-IN speech server written for these tests, not
faster-whisper-server, Speaches or OpenAI. It follows OpenAI's documented audio API and serves
this project's REAL engines behind it, faster-whisper tiny.en and Piper joe-medium, so the
engines are proven end to end on real speech:

- a real clip's transcript through the engine is the local engine's transcript of the same
  samples (sent as a 16 kHz WAV, received bit for bit);
- speech comes back streamed at the declared rate (24 kHz `pcm`, or the WAV header's), is not
  silent, and is heard by Whisper as the words asked for;
- a reply closed early closes the response, and the server stops synthesising;
- the error codes for 401, 429 (throttled, quota), 404, nothing listening and a stall, with the
  key in no error and no log line.

And openai-stt against the REAL faster-whisper-server 0.0.3 from PyPI, started by the test on the
bundled tiny.en (tests/audio_servers.py, `start_faster_whisper_server`): its transcripts of real
clips are the local engine's on the same decoding options. It has no authentication and no
speech endpoint, so the key, errors and TTS are proven against the stand-in only.
"""

from __future__ import annotations

import asyncio
import logging
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from latency_bench.wer import normalise, word_error_rate
from models.base import EngineError, VoiceSettings
from models.faster_whisper_stt import FasterWhisperSTT
from models.piper_tts import PiperTTS
from models.registry import spec_for
from tests.audio_servers import OpenAIAudioStandIn
from tests.llm_servers import free_port

pytestmark = pytest.mark.models

KEY = "sk-audio-test-key-5c4b3a29f8e7d6c1"
CLIPS = ["arctic_a0024.16k.wav", "cmu_arctic_us_aew_a0001.16k.wav"]


@pytest.fixture(scope="module")
async def whisper():
    engine = FasterWhisperSTT(threads=1)
    yield engine
    await engine.aclose()


@pytest.fixture(scope="module")
async def piper():
    engine = PiperTTS(threads=1)
    yield engine
    await engine.aclose()


@pytest.fixture
def speech_server(whisper: FasterWhisperSTT, piper: PiperTTS):
    stand_in = OpenAIAudioStandIn(whisper, piper, api_key=KEY)
    yield stand_in
    stand_in.close()


def stt(speech_server: OpenAIAudioStandIn, **options):
    return spec_for("stt", "openai-stt").load(
        {"base_url": speech_server.base_url, "model": speech_server.stt_model, "api_key": KEY, **options}
    )


def tts(speech_server: OpenAIAudioStandIn, **options):
    return spec_for("tts", "openai-tts").load(
        {"base_url": speech_server.base_url, "model": speech_server.tts_model, "api_key": KEY, **options}
    )


def clip_audio(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        assert wav.getframerate() == 16_000 and wav.getnchannels() == 1
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float32) / 32768


def picked(manifest: list[dict]) -> list[dict]:
    by_name = {entry["file"]: entry for entry in manifest}
    return [by_name[name] for name in CLIPS if name in by_name] or manifest[:2]


async def speech(engine, text: str, voice: VoiceSettings | None = None):
    try:
        return [chunk async for chunk in engine.synthesize(text, voice or VoiceSettings())]
    finally:
        await engine.aclose()


def heard(pcm16: bytes, rate: int) -> np.ndarray:
    import soxr

    audio = np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768
    return soxr.resample(audio, rate, 16_000).astype(np.float32)


# ------------------------------------------------------------------------------ speech to text


async def test_a_real_clips_transcript_is_the_local_engines(
    speech_server: OpenAIAudioStandIn, whisper: FasterWhisperSTT, speech_clips: Path, speech_manifest
):
    engine = stt(speech_server)
    try:
        for entry in picked(speech_manifest):
            audio = clip_audio(speech_clips / entry["file"])
            local = await whisper.transcribe(audio)
            remote = await engine.transcribe(audio)
            assert remote.text == local.text and remote.text, (entry["file"], remote.text, local.text)
            assert word_error_rate([entry["transcript"]], [remote.text]) < 0.35, normalise(remote.text)
            # Metered as the audio sent; and what was sent is the clip, bit for bit, as a WAV.
            assert remote.audio_ms == len(audio) * 1000 // 16_000
            call = speech_server.calls[-1]
            assert call.wav == {"rate": 16_000, "channels": 1, "width": 2, "frames": len(audio)}
            assert call.samples is not None and np.array_equal(call.samples, audio)
            assert call.fields == {"model": "tiny.en", "language": "en", "response_format": "json"}
            assert call.headers["authorization"] == f"Bearer {KEY}"
            assert call.headers["content-type"].startswith("multipart/form-data")
    finally:
        await engine.aclose()
    assert (engine.info.kind, engine.info.provider, engine.info.model) == ("stt", "openai-stt", "tiny.en")


# ------------------------------------------------------------------------------ text to speech


async def test_speech_streams_back_as_24_khz_pcm_and_whisper_hears_the_words(
    speech_server: OpenAIAudioStandIn, whisper: FasterWhisperSTT
):
    engine = tts(speech_server)
    assert engine.sample_rate == 24_000  # OpenAI's rate for pcm, offered to clients up front
    said = "Seven times eight is fifty six. Well done, that is right."
    chunks = await speech(engine, said)
    assert len(chunks) >= 2, len(chunks)  # read as it arrives, not as one body
    assert {c.sample_rate for c in chunks} == {24_000}
    assert all(len(c.pcm16) % 2 == 0 for c in chunks)
    pcm = b"".join(c.pcm16 for c in chunks)
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    assert 2.0 < len(samples) / 24_000 < 8.0, len(samples) / 24_000
    assert np.sqrt(np.mean(samples**2)) > 300 and np.abs(samples).max() > 3000  # speech, not silence
    assert len(pcm) == speech_server.calls[-1].audio_bytes  # everything the server sent, nothing more
    text = normalise((await whisper.transcribe(heard(pcm, 24_000))).text)
    # Piper samples its voice afresh each time; tiny.en sometimes hears "eight" as "a", so the
    # check is on words it never confused.
    assert "seven times" in text and "fifty six" in text and "well done" in text, text
    call = speech_server.calls[-1]
    # No speed at the normal rate.
    assert call.fields == {"model": "piper-joe-medium", "input": said, "voice": "alloy", "response_format": "pcm"}


async def test_a_wav_stream_is_read_at_its_headers_rate_with_the_personas_speed(
    speech_server: OpenAIAudioStandIn, piper: PiperTTS
):
    engine = tts(speech_server, response_format="wav", voice="onyx", voices={"tutor-maths": "alloy"})
    chunks = await speech(engine, "Plants make their food from sunlight.", VoiceSettings(rate=0.9))
    assert {c.sample_rate for c in chunks} == {piper.sample_rate} != {engine.sample_rate}  # 22050, from the header
    pcm = b"".join(c.pcm16 for c in chunks)
    assert len(pcm) == speech_server.calls[-1].audio_bytes  # the header was read, not played
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    assert np.sqrt(np.mean(samples**2)) > 300
    sent = speech_server.calls[-1].fields
    assert (sent["voice"], sent["response_format"], sent["speed"]) == ("onyx", "wav", 0.9)
    # A persona voice the options map goes by its mapped name.
    mapped = tts(speech_server, voices={"tutor-maths": "onyx"})
    await speech(mapped, "Hi.", VoiceSettings(voice="tutor-maths"))
    assert speech_server.calls[-1].fields["voice"] == "onyx"


async def test_a_reply_closed_early_stops_the_server_synthesising(speech_server: OpenAIAudioStandIn):
    engine = tts(speech_server)
    sentences = " ".join(f"This is sentence number {n} of a long answer." for n in range(1, 13))
    stream = engine.synthesize(sentences, VoiceSettings())
    try:
        first = await anext(stream)  # the student barges in after the first words
        assert first.pcm16
        await stream.aclose()
    finally:
        await engine.aclose()
    call = speech_server.calls[-1]
    deadline = time.monotonic() + 10
    while not call.client_went_away:
        assert not call.finished, "the server synthesised the whole answer nobody was listening to"
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


# ------------------------------------------------------------------------------ errors, and the key


async def _stt_failure(engine) -> EngineError:
    try:
        with pytest.raises(EngineError) as caught:
            await engine.transcribe(np.zeros(8_000, dtype=np.float32))
    finally:
        await engine.aclose()
    return caught.value


async def _tts_failure(engine) -> EngineError:
    with pytest.raises(EngineError) as caught:
        await speech(engine, "Hello there.")
    return caught.value


async def test_a_wrong_key_is_an_auth_error_that_never_shows_a_key(
    speech_server: OpenAIAudioStandIn, caplog: pytest.LogCaptureFixture
):
    wrong = "sk-wrong-audio-key-7e6d5c4b3a2f1e0d"
    caplog.set_level(logging.DEBUG)  # every logger, the SDK's and its HTTP client's included
    errors = [
        await _stt_failure(stt(speech_server, api_key=wrong)),
        await _tts_failure(tts(speech_server, api_key=wrong)),
    ]
    # And the good key in use, so it is logged too, if anything logs it.
    assert await speech(tts(speech_server), "Hi.")
    for error in errors:
        assert error.code == "engine_auth" and "HTTP 401" in str(error), error
        assert wrong not in str(error) and KEY not in str(error)
    # The wrong key was sent, and the stand-in echoed it in its 401 body (as OpenAI echoes part of
    # one): the engine never repeats it.
    assert speech_server.calls[0].headers["authorization"] == f"Bearer {wrong}"
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert caplog.records and wrong not in logged and KEY not in logged


@pytest.mark.parametrize("kind", ["stt", "tts"])
@pytest.mark.parametrize(
    ("error", "code"),
    [
        ({"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"},
         "engine_throttled"),
        ({"message": "You exceeded your current quota.", "type": "insufficient_quota", "code": "insufficient_quota"},
         "engine_quota"),
    ],
)
async def test_429_is_throttling_or_a_spent_quota_as_the_server_says(
    speech_server: OpenAIAudioStandIn, kind, error, code
):
    speech_server.script.status, speech_server.script.error_body = 429, {"error": error}
    failure = await (_stt_failure(stt(speech_server)) if kind == "stt" else _tts_failure(tts(speech_server)))
    assert failure.code == code and "HTTP 429" in str(failure) and f"openai-{kind}" in str(failure)
    assert len(speech_server.calls) == 1  # no retries by default: the fallback chain decides


async def test_an_unknown_model_nothing_listening_and_a_stalled_server(speech_server: OpenAIAudioStandIn):
    missing = await _stt_failure(stt(speech_server, model="whisper-large-v3"))
    assert missing.code == "engine_model_missing" and "HTTP 404" in str(missing)
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    refused = [await _stt_failure(stt(speech_server, base_url=nowhere)),
               await _tts_failure(tts(speech_server, base_url=nowhere))]
    for failure in refused:
        assert failure.code == "engine_unreachable" and "127.0.0.1" in str(failure), failure
    speech_server.script.stall_s = 2.0
    stalled = [await _stt_failure(stt(speech_server, timeout_s=0.5)),
               await _tts_failure(tts(speech_server, timeout_s=0.5))]
    for failure in stalled:
        assert failure.code == "engine_timeout", failure


# ------------------------------------------------------------------------------ the real server


@pytest.fixture(scope="module")
def faster_whisper_server(tmp_path_factory: pytest.TempPathFactory):
    from tests.audio_servers import start_faster_whisper_server

    running = start_faster_whisper_server(tmp_path_factory.mktemp("faster-whisper-server"))
    yield running
    running.stop()


async def test_the_real_faster_whisper_server_transcribes_a_real_clip_as_the_local_engine_does(
    faster_whisper_server, speech_clips: Path, speech_manifest
):
    """Against the REAL faster-whisper-server 0.0.3 from PyPI (not the stand-in), on the same
    tiny.en and the same decoding options as the local engine's full-window path."""
    local = FasterWhisperSTT(threads=1, trim_window=False)
    engine = spec_for("stt", "openai-stt").load({"base_url": faster_whisper_server.base_url, "model": "whisper-1"})
    try:
        for entry in picked(speech_manifest):
            audio = clip_audio(speech_clips / entry["file"])
            remote = await engine.transcribe(audio)
            expected = await local.transcribe(audio)
            assert remote.text == expected.text and remote.text, (entry["file"], remote.text, expected.text)
            assert word_error_rate([entry["transcript"]], [remote.text]) < 0.35, normalise(remote.text)
            assert remote.audio_ms == len(audio) * 1000 // 16_000
    finally:
        await engine.aclose()
        await local.aclose()

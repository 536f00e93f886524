"""A whole spoken turn with speech on a server: `convergio-voice serve` configured only by
environment variables to use openai-stt and openai-tts, both pointed at `OpenAIAudioStandIn`
(tests/audio_servers.py), a STAND-IN speech server that follows OpenAI's audio API with this
project's real faster-whisper and Piper behind it, running in the test process. The language
model is `echo`, which says the student's words back: the answer heard is then the transcript
itself, so the words go student -> server -> speech server -> tutor -> speech server -> student,
and the usage lands in the ledger under openai-stt and openai-tts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from latency_bench.client import VoiceClient, load_clip
from latency_bench.wer import normalise, word_error_rate
from models.faster_whisper_stt import FasterWhisperSTT
from models.piper_tts import PiperTTS
from tests.audio_servers import OpenAIAudioStandIn
from tests.conftest import TEST_SERVER_ENV, start_server, stop_server

pytestmark = pytest.mark.models

KEY = "sk-speech-server-key-0f9e8d7c6b5a4931"
CLIP = "arctic_a0024.16k.wav"


async def test_a_spoken_turn_is_transcribed_and_answered_by_the_speech_server_and_metered(
    tmp_path: Path, speech_clips: Path, speech_manifest
):
    entry = next((e for e in speech_manifest if e["file"] == CLIP), speech_manifest[0])
    whisper, piper = FasterWhisperSTT(threads=1), PiperTTS(threads=1)
    stand_in = OpenAIAudioStandIn(whisper, piper, api_key=KEY)
    env = {
        **TEST_SERVER_ENV,
        "CONVERGIO_ENGINES__STT": "openai-stt",
        "CONVERGIO_ENGINES__OPTIONS__OPENAI_STT__BASE_URL": stand_in.base_url,
        "CONVERGIO_ENGINES__OPTIONS__OPENAI_STT__MODEL": stand_in.stt_model,
        "CONVERGIO_ENGINES__OPTIONS__OPENAI_STT__API_KEY": KEY,
        "CONVERGIO_ENGINES__TTS": "openai-tts",
        "CONVERGIO_ENGINES__OPTIONS__OPENAI_TTS__BASE_URL": stand_in.base_url,
        "CONVERGIO_ENGINES__OPTIONS__OPENAI_TTS__MODEL": stand_in.tts_model,
        "CONVERGIO_ENGINES__OPTIONS__OPENAI_TTS__API_KEY": KEY,
        "CONVERGIO_ENGINES__LLM": "echo",  # says the transcript back; no model to share the cores with
        "CONVERGIO_ENGINES__TURN": "none",  # silence ends the turn; saves a core
        "CONVERGIO_LESSON_PLANS": "false",
        # The transcript answered is the engine's final one, never a partial taken at the STT deadline,
        # however loaded the two cores are (the stand-in's Whisper shares them with the server).
        "CONVERGIO_BUDGETS__STT__ACTION": "none",
        "CONVERGIO_LOG_LEVEL": "debug",
    }
    try:
        server = start_server(tmp_path, env=env)
        try:
            async with VoiceClient(server.ws_ticket_url()) as client:
                result = await client.play_clip(load_clip(speech_clips / entry["file"]), timeout_s=90)
                session_id = client.started["session_id"]
                output_rate = client.output_rate
            await asyncio.sleep(1.0)  # the ledger writes every 0.25 s
            status, report = server.get(f"/api/v1/usage/sessions/{session_id}", role="admin")
            log = server.log()
        finally:
            stop_server(server)
    finally:
        stand_in.close()
        await whisper.aclose()
        await piper.aclose()

    spoken = [t for t in result.turns if t.status != "no_speech"]
    done = spoken[-1]
    assert all(t.status == "completed" for t in spoken), (result, [m["type"] for m in client.messages])
    # Heard through the speech server, and answered with its audio at OpenAI's pcm rate.
    assert word_error_rate([entry["transcript"]], [result.transcript]) < 0.35, normalise(result.transcript)
    assert output_rate == 24_000 and result.reply_audio_ms >= 500, (output_rate, result.reply_audio_ms)
    said = normalise(result.reply_text)
    assert said and set(said.split()) & set(normalise(entry["transcript"]).split()), result.reply_text
    assert done.usage["providers"]["stt"] == "openai-stt/tiny.en"
    assert done.usage["providers"]["tts"] == "openai-tts/piper-joe-medium"
    # The speech server was asked for both, as the API documents it.
    transcriptions = [c for c in stand_in.calls if c.path == "/v1/audio/transcriptions"]
    speeches = [c for c in stand_in.calls if c.path == "/v1/audio/speech"]
    assert transcriptions and all(c.wav and c.wav["rate"] == 16_000 for c in transcriptions)
    assert speeches and all(c.fields["response_format"] == "pcm" for c in speeches)
    assert any(said.split()[-1] in normalise(c.fields["input"]) for c in speeches)
    # The ledger holds the turn's speech under the two engines' names.
    assert status == 200 and report["turns"].get("done") == len(spoken), report
    units: dict[tuple[str, str], int] = {}
    for line in report["usage"]:
        units[(line["provider"], line["kind"])] = units.get((line["provider"], line["kind"]), 0) + line["units"]
    told = {kind: sum(t.usage[kind] for t in spoken) for kind in ("stt_audio_ms", "tts_chars")}
    assert units.get(("openai-stt", "stt_audio_ms"), 0) >= told["stt_audio_ms"] > 0, (report, told)
    assert units.get(("openai-tts", "tts_chars"), 0) >= told["tts_chars"] > 0, (report, told)
    assert units.get(("openai-tts", "tts_audio_ms"), 0) > 0, report
    assert not {provider for provider, _ in units} & {"faster-whisper", "piper"}, units
    # The key was in the server's environment; it is in none of its log lines (debug level).
    assert KEY not in log

"""Speech-to-text and text-to-speech behind OpenAI's audio API, through the official `openai` SDK
(extra `[openai]`): the same adapter family as the language models in models/openai_llm.py.

- `openai-stt`: `POST {base_url}/audio/transcriptions`. Each utterance is sent as a 16 kHz mono
  16-bit WAV (multipart, as the API documents it), and the JSON answer's `text` is the
  transcript. Metered as the audio sent (`Transcription.audio_ms`).
- `openai-tts`: `POST {base_url}/audio/speech`. The response body is read as it streams and
  yielded as `SynthesizedAudio` chunks, so the first words play before the server has finished.
  `response_format` `pcm` is raw 16-bit mono little-endian at a rate the API does not send
  along: OpenAI's is 24 kHz, the default of `sample_rate`; set `sample_rate` to what another
  server sends. With `wav` the rate is read from the stream's own header, whatever
  `sample_rate` says (it then only names the rate the server is expected to send, which the
  voice server offers its clients before any audio exists).

A GPU box running an OpenAI-compatible speech server (faster-whisper-server, Speaches, vLLM for
transcription; Speaches or OpenAI itself for speech) can then serve many voice servers.

Like `openai-compatible`, each engine is local (privacy mode allows it) exactly when its
`base_url` is a loopback address (models/remote.py); `local=false` marks a loopback tunnel to
another machine as remote. Errors carry the project's codes (engine_auth, engine_quota,
engine_throttled, engine_timeout, engine_unreachable, engine_model_missing); the key is never
logged or put in a message, and the SDK's retries are off by default (the latency budgets and
the fallback chain decide).
"""

from __future__ import annotations

import io
import logging
import struct
import wave
from collections.abc import AsyncIterator
from typing import Any, Literal

import numpy as np
from pydantic import Field, SecretStr, field_validator, model_validator

from models.base import (
    EngineError,
    EngineInfo,
    SpeechToText,
    SynthesizedAudio,
    TextToSpeech,
    Transcription,
    VoiceSettings,
)
from models.locate import require_module
from models.openai_llm import INSTALL, NO_KEY, _Common, _http_timeout, openai_error
from models.remote import FAILED, TIMEOUT, UNREACHABLE, address_of, check_declared_local, server_is_local

log = logging.getLogger(__name__)

STT_RATE = 16_000  # what openai-stt sends: the pipeline's own rate, so nothing is resampled
OPENAI_PCM_RATE = 24_000  # OpenAI's documented rate of response_format "pcm"
PCM_RATES = (8_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000)


class _AudioServer(_Common):
    """What both audio engines share: where the server is, its key, and the LLM family's
    timeouts, retries and extra_body (models/openai_llm.py)."""

    base_url: str = Field(min_length=1)  # up to and including /v1
    model: str = Field(min_length=1)  # as the server names it
    api_key: SecretStr | None = None  # none for a server without authentication
    # None: local exactly when base_url's host is a loopback address. False: a loopback address
    # that is a tunnel or port forward to another machine. True only confirms a loopback host.
    local: bool | None = None

    @model_validator(mode="after")
    def _local_only_on_loopback(self) -> _AudioServer:
        check_declared_local(self.base_url, self.local)
        return self


class OpenAISTTOptions(_AudioServer):
    """Example: CONVERGIO_ENGINES__STT=openai-stt,
    CONVERGIO_ENGINES__OPTIONS__OPENAI_STT__BASE_URL=http://gpu-box.school.lan:8000/v1,
    CONVERGIO_ENGINES__OPTIONS__OPENAI_STT__MODEL=Systran/faster-whisper-small."""

    # ISO-639-1 code sent with every request; none (or empty) lets the server detect the language.
    language: str | None = Field("en", min_length=2)
    # This voice server's requests in flight at which the engine counts as busy: optional work
    # (a live partial transcript) is skipped meanwhile, and only final transcripts are sent.
    busy_at: int = Field(2, ge=1, le=64)

    @field_validator("language", mode="before")
    @classmethod
    def _empty_is_none(cls, language: Any) -> Any:
        return None if language == "" else language


class OpenAITTSOptions(_AudioServer):
    """Example: CONVERGIO_ENGINES__TTS=openai-tts,
    CONVERGIO_ENGINES__OPTIONS__OPENAI_TTS__BASE_URL=http://gpu-box.school.lan:8000/v1,
    CONVERGIO_ENGINES__OPTIONS__OPENAI_TTS__MODEL=speaches-ai/Kokoro-82M-v1.0-ONNX,
    CONVERGIO_ENGINES__OPTIONS__OPENAI_TTS__VOICE=af_heart."""

    voice: str = Field("alloy", min_length=1)  # when the persona's voice is none of `voices`
    # A persona's voice name -> the server's voice ("tutor-maths" -> "onyx").
    voices: dict[str, str] = {}
    response_format: Literal["pcm", "wav"] = "pcm"
    # The rate of `pcm` (OpenAI's is 24 kHz); for `wav`, the rate expected (the header rules).
    sample_rate: int = OPENAI_PCM_RATE

    @model_validator(mode="after")
    def _known_rate(self) -> OpenAITTSOptions:
        if self.sample_rate not in PCM_RATES:
            raise ValueError(f"sample_rate must be one of {', '.join(map(str, PCM_RATES))}")
        return self


def runs_locally(options: Any) -> bool:
    """Registry hook (EngineSpec.locality) for `openai-stt` and `openai-tts`."""
    assert isinstance(options, _AudioServer)
    return server_is_local(options.base_url, options.local)


def _client(options: _AudioServer) -> tuple[Any, str | None]:
    require_module("openai", "the openai SDK", INSTALL)
    from openai import AsyncOpenAI

    key = options.api_key.get_secret_value() if options.api_key else None
    client = AsyncOpenAI(
        base_url=options.base_url,
        # Always given, so the SDK never falls back on OPENAI_API_KEY from the environment and
        # sends a key meant for OpenAI to some other server.
        api_key=key or NO_KEY,
        timeout=_http_timeout(options),
        max_retries=options.max_retries,
    )
    return client, key


def _error(exc: Exception, engine: str, where: str, secret: str | None) -> EngineError:
    """As the LLM family maps the SDK's errors, plus the HTTP client's own while a response body
    streams (the SDK passes those through unwrapped). Matched by class name, so both `httpx`
    and `httpx2`, whichever the installed SDK uses, are mapped without importing either."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "TimeoutException" in names:
        return EngineError(f"{engine} at {where} did not answer in time", code=TIMEOUT)
    if "TransportError" in names:
        failed = type(exc).__name__
        return EngineError(f"{engine}: the connection to {where} failed ({failed})", code=UNREACHABLE)
    return openai_error(exc, engine, where, secret)


def wav_bytes(audio: np.ndarray, sample_rate: int = STT_RATE) -> bytes:
    """16-bit mono WAV of float32 audio in [-1, 1], scaled by 32768: the exact inverse of how the
    pipeline reads PCM16 (pipelines/audio.py), so audio that came in as PCM16 goes out unchanged."""
    pcm = np.clip(np.round(audio * 32768.0), -32768, 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())
    return buffer.getvalue()


class OpenAISTT(SpeechToText):
    def __init__(self, options: OpenAISTTOptions | None = None, **fields: Any) -> None:
        self.options = options = options or OpenAISTTOptions(**fields)
        self._client, self._secret = _client(options)
        self._where = address_of(options.base_url)
        self.info = EngineInfo("stt", "openai-stt", options.model)
        self._in_flight = 0

    @property
    def busy(self) -> bool:
        return self._in_flight >= self.options.busy_at

    async def transcribe(self, audio: np.ndarray, *, partial: bool = False) -> Transcription:
        if audio.dtype != np.float32:
            raise TypeError("audio must be float32 in [-1, 1]")
        kwargs: dict[str, Any] = {
            "model": self.options.model,
            "file": ("utterance.wav", wav_bytes(audio, self.sample_rate), "audio/wav"),
            "response_format": "json",
        }
        if self.options.language:
            kwargs["language"] = self.options.language
        if self.options.extra_body:
            kwargs["extra_body"] = self.options.extra_body
        self._in_flight += 1
        try:
            result = await self._client.audio.transcriptions.create(**kwargs)
        except Exception as exc:  # noqa: BLE001
            raise _error(exc, self.info.provider, self._where, self._secret) from None
        finally:
            self._in_flight -= 1
        text = getattr(result, "text", None)
        if not isinstance(text, str):
            where = f"{self.info.provider} at {self._where}"
            raise EngineError(f"{where} answered without a transcript", code=FAILED)
        return Transcription(text=text.strip(), audio_ms=len(audio) * 1000 // self.sample_rate)

    async def aclose(self) -> None:
        await self._client.close()


class WavStream:
    """Reads a WAV that arrives in pieces: the header first (its `fmt ` chunk says the rate),
    then the samples of its `data` chunk as they come. A streamed WAV's sizes are often
    placeholders (0 or 0xFFFFFFFF: the length is not known when the header is sent), so the
    data runs to the end of the stream unless its size is a real one."""

    def __init__(self) -> None:
        self._buffer = b""
        self.sample_rate: int | None = None
        self._remaining: int | None = None  # data bytes left; None: to the end of the stream
        self._in_data = False
        self._done = False

    def feed(self, data: bytes) -> bytes:
        """The PCM16 bytes this piece completes (possibly none)."""
        if self._done:
            return b""
        if self._in_data:
            return self._take(data)
        self._buffer += data
        if len(self._buffer) < 12:
            return b""
        if self._buffer[:4] != b"RIFF" or self._buffer[8:12] != b"WAVE":
            raise ValueError("not a WAV stream (no RIFF/WAVE header)")
        position = 12
        while len(self._buffer) >= position + 8:
            chunk_id = self._buffer[position : position + 4]
            (size,) = struct.unpack("<I", self._buffer[position + 4 : position + 8])
            body = position + 8
            if chunk_id == b"data":
                if self.sample_rate is None:
                    raise ValueError("WAV data before its fmt chunk")
                self._in_data = True
                self._remaining = None if size in (0, 0xFFFFFFFF) else size
                rest, self._buffer = self._buffer[body:], b""
                return self._take(rest)
            if len(self._buffer) < body + size:
                return b""  # this chunk is not all here yet
            if chunk_id == b"fmt ":
                tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", self._buffer[body : body + 16])
                if tag not in (1, 0xFFFE) or channels != 1 or bits != 16:
                    raise ValueError(
                        f"the WAV is {bits}-bit, {channels} channel(s), format {tag}; "
                        "only 16-bit mono PCM is read"
                    )
                self.sample_rate = rate
            position = body + size + (size & 1)  # chunks are padded to an even size
        return b""

    def _take(self, data: bytes) -> bytes:
        if self._remaining is not None:
            data = data[: self._remaining]
            self._remaining -= len(data)
            self._done = self._remaining == 0
        return data


class OpenAITTS(TextToSpeech):
    def __init__(self, options: OpenAITTSOptions | None = None, **fields: Any) -> None:
        self.options = options = options or OpenAITTSOptions(**fields)
        self._client, self._secret = _client(options)
        self._where = address_of(options.base_url)
        self.sample_rate = options.sample_rate
        self.info = EngineInfo("tts", "openai-tts", options.model)
        self._warned_rate = False

    def voice_name(self, voice: VoiceSettings) -> str:
        if voice.voice and voice.voice in self.options.voices:
            return self.options.voices[voice.voice]
        return self.options.voice

    def request(self, text: str, voice: VoiceSettings) -> dict[str, Any]:
        """The body of one `audio/speech` request (the SDK's keyword arguments)."""
        kwargs: dict[str, Any] = {
            "model": self.options.model,
            "input": text,
            "voice": self.voice_name(voice),
            "response_format": self.options.response_format,
        }
        rate = min(max(voice.rate, 0.5), 2.0)
        if rate != 1.0:  # sent only when it says something: not every server takes `speed`
            kwargs["speed"] = round(rate, 3)
        if self.options.extra_body:
            kwargs["extra_body"] = self.options.extra_body
        return kwargs

    async def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[SynthesizedAudio]:
        if not text.strip():
            return
        engine = self.info.provider
        wav = WavStream() if self.options.response_format == "wav" else None
        odd = b""  # a sample split between two pieces of the body
        sent = 0
        try:
            # Leaving this block early (a barge-in closes the generator) closes the response,
            # which tells the server to stop.
            async with self._client.audio.speech.with_streaming_response.create(
                **self.request(text, voice)
            ) as response:
                async for piece in response.iter_bytes():
                    if wav is not None:
                        try:
                            piece = wav.feed(piece)
                        except ValueError as exc:
                            raise EngineError(f"{engine} at {self._where}: {exc}", code=FAILED) from None
                    data, odd = odd + piece, b""
                    if len(data) % 2:
                        data, odd = data[:-1], data[-1:]
                    if data:
                        sent += len(data)
                        yield SynthesizedAudio(data, self._rate(wav))
        except EngineError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _error(exc, engine, self._where, self._secret) from None
        if wav is not None and wav.sample_rate is None:
            raise EngineError(f"{engine} at {self._where}: the WAV stream ended before its header",
                              code=FAILED)
        if not sent and any(ch.isalnum() for ch in text):
            # Words came back as nothing to play: an error, so a fallback engine can speak instead.
            raise EngineError(f"{engine} at {self._where} sent no audio", code=FAILED)

    def _rate(self, wav: WavStream | None) -> int:
        if wav is None or wav.sample_rate is None:
            return self.sample_rate
        if wav.sample_rate != self.sample_rate and not self._warned_rate:
            self._warned_rate = True
            log.info("%s at %s sends %d Hz WAV (sample_rate says %d); its audio is resampled for "
                     "the clients", self.info.provider, self._where, wav.sample_rate, self.sample_rate)
        return wav.sample_rate

    async def aclose(self) -> None:
        await self._client.close()

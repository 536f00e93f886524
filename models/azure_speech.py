"""Azure AI Speech: speech-to-text (`azure-stt`) and text-to-speech (`azure-tts`) on the official
SDK, `azure-cognitiveservices-speech` (extra `[azure]`). Both send the student's audio or the
tutor's text to Microsoft: they are not local, and privacy mode refuses them.

Configuration (the same fields for both engines, each under its own name):

    CONVERGIO_ENGINES__STT=azure-stt
    CONVERGIO_ENGINES__OPTIONS__AZURE_STT__REGION=westeurope
    CONVERGIO_ENGINES__OPTIONS__AZURE_STT__KEY=<the Speech resource's key>

- where: `region`, or `endpoint` (a full `wss://` or `https://` URL: a custom domain, a private
  endpoint, a Speech container); one of them is required.
- credentials, exactly one of: `key` (kept as a secret, never logged or shown), `token` (a
  Microsoft Entra access token in the form the Speech service takes, `aad#<resource id>#<token>`,
  or an STS token; tokens expire, so a long-running server needs a key or a refreshed token), or
  `key_id` (a school's key kept in the server's encrypted key store: `serve` reads it from there
  and fills in `key` when it loads the engine; `set_key_resolver` is the hook for a program that
  embeds the adapter without the server, and with neither, loading fails with a clear error).
- `timeout_s`: the most one call may wait on the service before it fails as unreachable. It is a
  safety net only: in a turn the latency budgets (action `fallback`) switch to the next engine of
  a chain much sooner.

Errors are mapped from the SDK's `CancellationErrorCode` to the project's codes
(`map_cancellation`): a bad key or token -> engine_auth, an exhausted (free tier) quota ->
engine_quota, too many requests -> engine_throttled, no connection / timeout / service down ->
engine_unreachable, anything else -> engine_error.

Speech-to-text streams each utterance into the service through a push stream with continuous
recognition; the service's interim hypotheses (`recognizing` events) are kept as
`last_hypothesis`, and the pipeline's live captions come, as for every STT engine, from calls on
the growing utterance (`partial=True`). Text-to-speech sends SSML with the persona's voice and
rate (`<prosody rate>`) and yields raw PCM as the service streams it.

Tested here (no Azure service can be reached from this machine): option validation, the error
mapping over the SDK's real codes, and real SDK calls to unreachable endpoints (they fail as
engine_unreachable, and a fallback chain answers from the local engine). Never run against the
real service from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from models.base import (
    EngineError,
    EngineInfo,
    ModelNotInstalledError,
    SpeechToText,
    SynthesizedAudio,
    TextToSpeech,
    Transcription,
    VoiceSettings,
)

log = logging.getLogger(__name__)

SDK_MODULE = "azure.cognitiveservices.speech"
INSTALL = "pip install azure-cognitiveservices-speech"

# The SDK's CancellationErrorCode names -> the project's EngineError codes.
ERROR_CODES: dict[str, str] = {
    "AuthenticationFailure": "engine_auth",  # bad key, expired or wrong token
    "Forbidden": "engine_quota",  # the SDK: "the free subscription ... ran out of quota"
    "TooManyRequests": "engine_throttled",  # over the allowed concurrent requests
    "ConnectionFailure": "engine_unreachable",
    "ServiceTimeout": "engine_unreachable",
    "ServiceUnavailable": "engine_unreachable",
    "BadRequest": "engine_error",  # e.g. an unknown voice or language
    "ServiceError": "engine_error",
    "RuntimeError": "engine_error",
}

# Resolves a `key_id` to a key where the server has not filled `key` in (see module docstring).
_key_resolver: Callable[[str], str] | None = None


def set_key_resolver(resolver: Callable[[str], str] | None) -> None:
    """Plug in the key store: `resolver(key_id)` returns the key or raises KeyError."""
    global _key_resolver
    _key_resolver = resolver


def map_cancellation(error_code: Any, details: str, *, engine: str = "azure speech") -> EngineError:
    """The project's error for an SDK cancellation (`CancellationErrorCode` member or its name)."""
    name = getattr(error_code, "name", str(error_code)).rsplit(".", 1)[-1]
    code = ERROR_CODES.get(name, "engine_error")
    first_line = (details or "").strip().splitlines()[0] if (details or "").strip() else "no details"
    return EngineError(f"{engine}: {name}: {first_line}", code=code)


def _sdk() -> Any:
    try:
        import azure.cognitiveservices.speech as sdk
    except ImportError as exc:
        raise ModelNotInstalledError("Azure Speech SDK (azure-cognitiveservices-speech)", INSTALL) from exc
    return sdk


_REGION = re.compile(r"^[a-z0-9]+$")
_AZURE_VOICE = re.compile(r"^[a-z]{2,3}-[A-Z]{2}(-[A-Za-z]+)?-\w+Neural\w*$")


class AzureSpeechOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    region: str | None = None  # e.g. "westeurope"
    endpoint: str | None = None  # wss:// or https://; instead of region
    key: SecretStr | None = None
    token: SecretStr | None = None  # Microsoft Entra ("aad#<resource id>#<token>") or STS token
    key_id: str | None = None  # a school's key in the server's key store
    timeout_s: float = Field(15.0, gt=0, le=120)

    @field_validator("region")
    @classmethod
    def _region(cls, region: str | None) -> str | None:
        if region is not None and not _REGION.match(region):
            raise ValueError("a region is a name such as 'westeurope' (lower case letters and digits)")
        return region

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, endpoint: str | None) -> str | None:
        if endpoint is not None and not endpoint.startswith(("wss://", "ws://", "https://", "http://")):
            raise ValueError("an endpoint is a wss:// or https:// URL")
        return endpoint

    @model_validator(mode="after")
    def _where_and_who(self) -> AzureSpeechOptions:
        if not self.region and not self.endpoint:
            raise ValueError(
                "option 'region' is required (the Speech resource's region, e.g. westeurope), "
                "or option 'endpoint'"
            )
        given = [name for name in ("key", "token", "key_id") if getattr(self, name)]
        if not given:
            raise ValueError(
                "option 'key' is required (the Speech resource's key), or option 'token' "
                "(a Microsoft Entra token), or option 'key_id' (a key in the school key store)"
            )
        if len(given) > 1:
            raise ValueError(f"give only one of the options 'key', 'token' and 'key_id' (given: {', '.join(given)})")
        return self


class AzureSTTOptions(AzureSpeechOptions):
    language: str = "en-US"


class AzureTTSOptions(AzureSpeechOptions):
    voice: str = "en-US-JennyNeural"  # when the persona names no Azure voice
    # A persona's voice name -> an Azure voice ("tutor-maths" -> "en-GB-RyanNeural"); a persona
    # voice that is itself an Azure voice name is used as it is.
    voices: dict[str, str] = {}
    sample_rate: int = 16_000

    @field_validator("sample_rate")
    @classmethod
    def _rate(cls, rate: int) -> int:
        if rate not in _PCM_FORMATS:
            raise ValueError(f"sample_rate must be one of {', '.join(map(str, _PCM_FORMATS))}")
        return rate


_PCM_FORMATS = {
    8000: "Raw8Khz16BitMonoPcm",
    16_000: "Raw16Khz16BitMonoPcm",
    22_050: "Raw22050Hz16BitMonoPcm",
    24_000: "Raw24Khz16BitMonoPcm",
    44_100: "Raw44100Hz16BitMonoPcm",
    48_000: "Raw48Khz16BitMonoPcm",
}


def speech_config(sdk: Any, options: AzureSpeechOptions) -> Any:
    """The SDK's SpeechConfig for these options. The key goes to the SDK and nowhere else."""
    key = options.key.get_secret_value() if options.key else None
    if key is None and options.key_id is not None:  # the server fills `key` from its key store
        if _key_resolver is None:
            raise ValueError(
                "option 'key_id' is resolved by the server's key store when `serve` loads the engine; "
                "here there is none, so set option 'key' or 'token' instead"
            )
        try:
            key = _key_resolver(options.key_id)
        except KeyError:
            raise ValueError(f"option 'key_id': no key {options.key_id!r} in the key store") from None
    if key is not None:
        if options.endpoint:
            return sdk.SpeechConfig(subscription=key, endpoint=options.endpoint)
        return sdk.SpeechConfig(subscription=key, region=options.region)
    token = options.token.get_secret_value() if options.token else ""
    if options.endpoint:
        config = sdk.SpeechConfig(endpoint=options.endpoint)
        config.authorization_token = token
        return config
    return sdk.SpeechConfig(auth_token=token, region=options.region)


def _where(options: AzureSpeechOptions) -> str:
    return options.region or "custom-endpoint"


class _Bridge:
    """SDK callbacks run on the SDK's threads; this hands their outcome to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.done: asyncio.Future[None] = loop.create_future()
        # An error that lands after the caller left (switched, timed out) is read here, unseen.
        self.done.add_done_callback(lambda f: f.cancelled() or f.exception())

    def finish(self, error: BaseException | None = None) -> None:
        def settle() -> None:
            if self.done.done():
                return
            if error is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(error)

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self.loop.call_soon_threadsafe(settle)


def _retire(holder: list[Any], stop: str | None) -> None:
    """Stop an SDK recognizer or synthesizer and drop it, on a worker thread: the SDK's native
    destructor waits for its connection thread (about 10 s on a stalled connection, measured
    here), and it must never run on the event loop. `holder` is the only reference left."""
    engine = holder.pop()
    try:
        if stop is not None:
            getattr(engine, stop)()  # the SDK's *_async: returns at once
    except Exception:  # noqa: BLE001 - stopping something that already failed
        pass
    del engine


def _retire_later(engine: Any, stop: str | None) -> None:
    with contextlib.suppress(RuntimeError):  # no loop left: the process is ending
        asyncio.get_running_loop().run_in_executor(None, _retire, [engine], stop)


class AzureSTT(SpeechToText):
    def __init__(self, options: AzureSTTOptions | None = None, **fields: Any) -> None:
        self.options = options = options or AzureSTTOptions(**fields)
        self._sdk = sdk = _sdk()
        self._config = speech_config(sdk, options)
        self._config.speech_recognition_language = options.language
        self.info = EngineInfo("stt", "azure", f"speech-{options.language}@{_where(options)}")
        self.last_hypothesis = ""  # the service's latest interim hypothesis (any call)

    def _start(self, pcm: bytes, bridge: _Bridge, texts: list[str]) -> Any:
        sdk = self._sdk
        stream = sdk.audio.PushAudioInputStream(sdk.audio.AudioStreamFormat(self.sample_rate, 16, 1))
        recognizer = sdk.SpeechRecognizer(
            speech_config=self._config, audio_config=sdk.audio.AudioConfig(stream=stream)
        )

        def recognized(event: Any) -> None:
            if event.result.reason == sdk.ResultReason.RecognizedSpeech and event.result.text:
                texts.append(event.result.text)

        def recognizing(event: Any) -> None:
            self.last_hypothesis = " ".join([*texts, event.result.text])

        def canceled(event: Any) -> None:
            details = event.cancellation_details
            if details.reason == sdk.CancellationReason.Error:
                bridge.finish(map_cancellation(details.code, details.error_details, engine="azure-stt"))
            else:
                bridge.finish()  # EndOfStream: all the audio is transcribed

        recognizer.recognized.connect(recognized)
        recognizer.recognizing.connect(recognizing)
        recognizer.canceled.connect(canceled)
        recognizer.session_stopped.connect(lambda _event: bridge.finish())
        # In 100 ms pieces, as a microphone would stream it; the service starts on the first.
        for start in range(0, len(pcm), 3200):
            stream.write(pcm[start : start + 3200])
        stream.close()
        recognizer.start_continuous_recognition_async()
        return recognizer

    async def transcribe(self, audio: np.ndarray, *, partial: bool = False) -> Transcription:
        if audio.dtype != np.float32:
            raise TypeError("audio must be float32 in [-1, 1]")
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        bridge = _Bridge(asyncio.get_running_loop())
        texts: list[str] = []
        recognizer = None
        try:
            recognizer = await asyncio.to_thread(self._start, pcm, bridge, texts)
            await asyncio.wait_for(asyncio.shield(bridge.done), self.options.timeout_s)
        except TimeoutError:
            raise EngineError(
                f"azure-stt: no answer within {self.options.timeout_s:g} s", code="engine_unreachable"
            ) from None
        except EngineError:
            raise
        except Exception as exc:  # noqa: BLE001 - the SDK's own errors (bad arguments, native failures)
            raise EngineError(f"azure-stt failed: {exc}") from exc
        finally:
            if recognizer is not None:
                # Left early (switched, timed out): stop the recognition too. Either way off the
                # loop, which must never wait for the service or the SDK's teardown.
                stop = None if bridge.done.done() else "stop_continuous_recognition_async"
                _retire_later(recognizer, stop)
                recognizer = None
        return Transcription(text=" ".join(texts).strip(), audio_ms=len(audio) * 1000 // self.sample_rate)


class AzureTTS(TextToSpeech):
    CHUNK_MS = 100

    def __init__(self, options: AzureTTSOptions | None = None, **fields: Any) -> None:
        self.options = options = options or AzureTTSOptions(**fields)
        self._sdk = sdk = _sdk()
        self._config = speech_config(sdk, options)
        self._config.set_speech_synthesis_output_format(
            getattr(sdk.SpeechSynthesisOutputFormat, _PCM_FORMATS[options.sample_rate])
        )
        self.sample_rate = options.sample_rate
        self.info = EngineInfo("tts", "azure", f"{options.voice}@{_where(options)}")

    def voice_name(self, voice: VoiceSettings) -> str:
        if voice.voice and voice.voice in self.options.voices:
            return self.options.voices[voice.voice]
        if voice.voice and _AZURE_VOICE.match(voice.voice):
            return voice.voice
        return self.options.voice

    def ssml(self, text: str, voice: VoiceSettings) -> str:
        name = self.voice_name(voice)
        language = "-".join(name.split("-")[:2])
        rate = min(max(voice.rate, 0.5), 2.0)
        return (
            f'<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis" xml:lang={quoteattr(language)}>'
            f"<voice name={quoteattr(name)}><prosody rate={quoteattr(f'{(rate - 1) * 100:+.0f}%')}>"
            f"{escape(text)}</prosody></voice></speak>"
        )

    def _error(self, stream: Any, result: Any) -> EngineError:
        sdk = self._sdk
        details = None
        with contextlib.suppress(Exception):
            details = stream.cancellation_details if stream is not None else None
        if details is None and result is not None and result.reason == sdk.ResultReason.Canceled:
            details = sdk.SpeechSynthesisCancellationDetails.from_result(result)
        if details is None:
            return EngineError("azure-tts: synthesis stopped without audio")
        return map_cancellation(details.error_code, details.error_details, engine="azure-tts")

    async def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[SynthesizedAudio]:
        sdk = self._sdk
        synthesizer = sdk.SpeechSynthesizer(speech_config=self._config, audio_config=None)
        chunk_bytes = self.sample_rate * 2 * self.CHUNK_MS // 1000
        finished = False
        timeout = self.options.timeout_s
        try:
            try:
                started = synthesizer.start_speaking_ssml_async(self.ssml(text, voice))
                result = await asyncio.wait_for(asyncio.to_thread(started.get), timeout)
                stream = sdk.AudioDataStream(result)

                def read() -> bytes:
                    buffer = bytes(chunk_bytes)
                    filled = stream.read_data(buffer)
                    return buffer[:filled]

                while True:
                    data = await asyncio.wait_for(asyncio.to_thread(read), timeout)
                    if not data:
                        break
                    yield SynthesizedAudio(data, self.sample_rate)
            except TimeoutError:
                raise EngineError(
                    f"azure-tts: no audio within {timeout:g} s", code="engine_unreachable"
                ) from None
            except EngineError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise EngineError(f"azure-tts failed: {exc}") from exc
            if stream.status != sdk.StreamStatus.AllData:
                raise self._error(stream, result)
            finished = True
        finally:
            # Switched, cancelled (barge-in) or failed: stop the service's work too. Either way
            # the synthesizer is dropped off the loop (see _retire).
            stream = result = started = None
            _retire_later(synthesizer, None if finished else "stop_speaking_async")
            synthesizer = None

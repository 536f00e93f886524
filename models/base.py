"""The four engine interfaces the pipeline depends on.

Adapters wrap a concrete backend (faster-whisper, llama.cpp, Piper, ...) behind one of these. The
pipeline never imports a backend directly, so adding a backend is one module plus a registry entry.
Blocking inference stays inside the adapter, which runs it on its own worker thread.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np


class EngineError(RuntimeError):
    """An engine failed while serving a request (not a usage error).

    `code` is machine-readable, so a remote engine can say why (engine_auth, engine_quota,
    engine_throttled, engine_unreachable) and the session can tell the client or a teacher."""

    def __init__(self, message: str, *, code: str = "engine_error") -> None:
        super().__init__(message)
        self.code = code


class ModelNotInstalledError(RuntimeError):
    """A model or backend package is missing; the message names what to install."""

    def __init__(self, what: str, install: str) -> None:
        super().__init__(f"{what} is not installed. Install it with: {install}")
        self.what = what
        self.install = install


@dataclass(frozen=True, slots=True)
class EngineInfo:
    kind: str  # "vad" | "stt" | "llm" | "tts"
    provider: str  # e.g. "faster-whisper"
    model: str  # e.g. "tiny.en"


@dataclass(slots=True)
class CallControl:
    """The caller's side of one engine call, shared with whatever serves it.

    `switch`: set by the caller when its deadline for this call passes with the action
    "fallback". A fallback chain then abandons the engine serving the call and tries the next
    one, provided that engine has produced no output yet (half an answer is never restarted);
    the chain clears the event once it has acted on it, so the caller may set it again.
    `served_by`: set by a chain (or an adapter that routes) to the engine that actually did the
    work, so usage is attributed to the right provider and model; None means the engine called
    did the work itself.
    """

    switch: asyncio.Event = field(default_factory=asyncio.Event)
    served_by: EngineInfo | None = None


_call: ContextVar[CallControl | None] = ContextVar("convergio_call", default=None)


def current_call() -> CallControl:
    """The caller's control for the engine call in progress. Outside any `call_scope` it is a
    fresh one nobody watches: the call is never switched and `served_by` goes unread."""
    return _call.get() or CallControl()


@contextlib.contextmanager
def call_scope(control: CallControl) -> Iterator[CallControl]:
    """Enter around one engine call (an awaited transcription, a stream iterated to its end).
    Streams read the scope when they start, so enter it before the first `anext`."""
    token = _call.set(control)
    try:
        yield control
    finally:
        _call.reset(token)


class VoiceActivityDetector(abc.ABC):
    """Classifies fixed-size PCM16 frames as speech or not. Cheap enough to call inline."""

    info: EngineInfo
    sample_rate: int
    frame_samples: int

    @abc.abstractmethod
    def is_speech(self, frame: bytes) -> bool: ...

    def new_stream(self) -> VoiceActivityDetector:
        """A detector for one more audio stream. Detectors with memory (smoothing, hangover,
        adaptive noise floor) must return a fresh instance: fed two sessions' frames in turn, one
        student's speech would keep the other's silence "voiced". The endpointing stage also takes
        a fresh one after each turn, so no turn is heard through what the last one taught it.
        Stateless detectors may return themselves."""
        return self


@dataclass(frozen=True, slots=True)
class Transcription:
    text: str
    audio_ms: int  # speech audio the engine consumed, for metering
    # The engine's own probability that a sentence ends after the last word (a full stop, question
    # or exclamation mark there); None where the engine cannot say. Turn-taking evidence.
    sentence_end: float | None = None


class SpeechToText(abc.ABC):
    """Transcribes one utterance of 16 kHz mono float32 audio.

    Streaming partials are produced by the pipeline calling `transcribe` on the growing utterance;
    adapters only need a fast, exact batch call.
    """

    info: EngineInfo
    sample_rate: int = 16_000

    @property
    def busy(self) -> bool:
        """True while earlier requests are queued or running (optional work can be skipped)."""
        return False

    @abc.abstractmethod
    async def transcribe(self, audio: np.ndarray, *, partial: bool = False) -> Transcription: ...

    async def warm_up(self) -> None:
        await self.transcribe(np.zeros(self.sample_rate, dtype=np.float32))

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        pass


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(slots=True)
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(slots=True)
class GenerationRequest:
    messages: Sequence[ChatMessage]
    max_tokens: int = 96
    temperature: float = 0.4
    cancel: threading.Event = field(default_factory=threading.Event)
    # Filled in by the adapter as generation runs, so a cancelled stream is still metered exactly.
    usage: TokenUsage = field(default_factory=TokenUsage)
    # Fixes the sampler's randomness for this request (engines that cannot, ignore it): a turn is
    # then reproducible, and a retry with another seed really is another draw.
    seed: int | None = None


class LanguageModel(abc.ABC):
    """Streams text pieces for a chat. Must honour `request.cancel` between tokens."""

    info: EngineInfo

    @property
    def busy(self) -> bool:
        """True while earlier requests are queued or running (optional work can be skipped)."""
        return False

    @abc.abstractmethod
    def stream(self, request: GenerationRequest) -> AsyncIterator[str]: ...

    async def prefill(self, messages: Sequence[ChatMessage]) -> int:
        """Optional: read a prompt's start into the model's cache ahead of time (the question
        heard so far, while the student is still talking), so the real request later only reads
        what changed. Returns the prompt tokens read; engines without a cache do nothing."""
        return 0

    async def warm_up(self, prefixes: Sequence[Sequence[ChatMessage]] = ()) -> None:
        """Run a tiny generation so the first real turn pays no load or cache cost."""
        for messages in prefixes or [[ChatMessage("user", "Hi")]]:
            request = GenerationRequest(messages=messages, max_tokens=1)
            async for _ in self.stream(request):
                pass

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        pass


@dataclass(frozen=True, slots=True)
class VoiceSettings:
    """Per-persona voice controls an adapter may honour. `rate` 1.0 is the voice's normal speed."""

    voice: str | None = None
    rate: float = 1.0


@dataclass(frozen=True, slots=True)
class SynthesizedAudio:
    pcm16: bytes  # mono, little-endian, at the engine's sample_rate
    sample_rate: int

    @property
    def duration_ms(self) -> int:
        return (len(self.pcm16) // 2) * 1000 // self.sample_rate


class TextToSpeech(abc.ABC):
    """Synthesises text into audio chunks, streaming as each chunk is ready."""

    info: EngineInfo
    sample_rate: int

    @abc.abstractmethod
    def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[SynthesizedAudio]: ...

    async def warm_up(self) -> None:
        async for _ in self.synthesize("Hello.", VoiceSettings()):
            pass

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        pass


class TurnCompletion(abc.ABC):
    """Scores whether a speaker has finished their turn, from the audio of the utterance so far
    (16 kHz mono float32, its trailing silence included). Used at a pause, never per frame."""

    info: EngineInfo
    sample_rate: int = 16_000

    @abc.abstractmethod
    async def completion(self, audio: np.ndarray) -> float:
        """P(the turn is complete), in [0, 1]."""

    async def warm_up(self) -> None:
        await self.completion(np.zeros(self.sample_rate, dtype=np.float32))

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        pass

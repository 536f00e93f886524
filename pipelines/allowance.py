"""Usage caps: a session never sends a provider more work than it is allowed.

Caps are integer units per engine kind (the units the ledger bills: audio milliseconds
transcribed, LLM tokens, TTS characters). `AllowanceStage` adds up every `Usage` frame of the
session; the engines a capped session uses are wrapped so that each call first asks it. A call
that would go over the cap is never made: the wrapper raises `EngineError(code="cap_reached")`,
the client gets one `CapReached` event per kind, and the turn ends with a declared notice,
spoken from audio synthesised at start-up (so a TTS cap is no reason to call TTS) and written.

A call's cost is known before it is made for speech (audio length, characters) and bounded for
the language model: its prompt is estimated high (three characters a token; English runs about
four) and its answer is cut at what is left, so the cap holds without asking the model first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.base import (
    EngineError,
    GenerationRequest,
    LanguageModel,
    SpeechToText,
    SynthesizedAudio,
    TextToSpeech,
    Transcription,
    VoiceSettings,
)
from pipelines.budgets import CAP_NOTICE
from pipelines.control import Out, ReplyDone, Usage
from pipelines.frames import CapReached, ErrorCode, Frame, PipelineError, SystemFrame, TurnStatus, UsageKind
from pipelines.processor import Stage
from pipelines.turn import Attempt

CapKind = Literal["stt", "llm", "tts"]
CAP_REACHED = "cap_reached"  # EngineError.code of a call the cap refused
CHARS_PER_TOKEN_LOW = 3  # a high estimate of a prompt's tokens: English averages ~4 characters

_KIND_OF: dict[UsageKind, CapKind] = {
    UsageKind.STT_AUDIO_MS: "stt",
    UsageKind.STT_PARTIAL_AUDIO_MS: "stt",
    UsageKind.LLM_PROMPT_TOKENS: "llm",
    UsageKind.LLM_COMPLETION_TOKENS: "llm",
    UsageKind.TTS_CHARS: "tts",
}
UNIT: dict[CapKind, str] = {"stt": "audio_ms", "llm": "tokens", "tts": "chars"}


class UsageCaps(BaseModel):
    """Per session; None: no cap. Example: CONVERGIO_BILLING__SESSION_CAPS__LLM_TOKENS=20000."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stt_audio_ms: int | None = Field(None, ge=0, description="speech transcribed, partial captions included")
    llm_tokens: int | None = Field(None, ge=0, description="prompt and completion tokens")
    tts_chars: int | None = Field(None, ge=0, description="characters synthesised")

    def limit(self, kind: CapKind) -> int | None:
        return {"stt": self.stt_audio_ms, "llm": self.llm_tokens, "tts": self.tts_chars}[kind]

    @property
    def any(self) -> bool:
        return any(self.limit(kind) is not None for kind in UNIT)


class AllowanceStage(Stage):
    """Keeps the session's running use per kind and answers "may this call go out?"."""

    name = "allowance"

    def __init__(self, caps: UsageCaps) -> None:
        super().__init__()
        self.caps = caps
        self.used: dict[CapKind, int] = dict.fromkeys(UNIT, 0)
        self._announced: set[CapKind] = set()

    def on_system(self, frame: SystemFrame) -> None:
        if isinstance(frame, Usage) and (kind := _KIND_OF.get(frame.kind)) is not None:
            self.used[kind] += max(0, frame.amount)

    def remaining(self, kind: CapKind) -> int | None:
        limit = self.caps.limit(kind)
        return None if limit is None else max(0, limit - self.used[kind])

    def permit(self, kind: CapKind, need: int) -> None:
        """Raise (and tell the client, once) unless `need` more units fit under the cap."""
        left = self.remaining(kind)
        if left is None or need <= left:
            return
        if kind not in self._announced:
            self._announced.add(kind)
            limit = self.caps.limit(kind)
            assert limit is not None
            self.push(CapReached(kind, UNIT[kind], limit, self.used[kind]))
        raise EngineError(f"the session's {kind} cap is reached", code=CAP_REACHED)


class _Wrapped:
    """Everything not metered passes through to the shared engine."""

    def __init__(self, inner: Any, allowance: AllowanceStage) -> None:
        self._inner = inner
        self._allowance = allowance
        self.info = inner.info

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def busy(self) -> bool:
        return bool(self._inner.busy)


class CappedSTT(_Wrapped, SpeechToText):
    async def transcribe(self, audio: np.ndarray, *, partial: bool = False) -> Transcription:
        self._allowance.permit("stt", len(audio) * 1000 // self._inner.sample_rate)
        return await self._inner.transcribe(audio, partial=partial)


class CappedLLM(_Wrapped, LanguageModel):
    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        prompt = prompt_estimate(request.messages)
        left = self._allowance.remaining("llm")
        self._allowance.permit("llm", prompt + 1)  # at least one token of answer
        if left is not None:
            request.max_tokens = max(1, min(request.max_tokens, left - prompt))
        async for piece in self._inner.stream(request):
            yield piece

    async def prefill(self, messages: Sequence[Any]) -> int:
        left = self._allowance.remaining("llm")
        if left is not None and prompt_estimate(messages) > left:
            return 0  # optional work: skipped quietly, the answer will say why
        return int(await self._inner.prefill(messages))


class CappedTTS(_Wrapped, TextToSpeech):
    async def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[SynthesizedAudio]:
        self._allowance.permit("tts", len(text))
        async for audio in self._inner.synthesize(text, voice):
            yield audio


def end_at_cap(push: Callable[[Frame], None], attempt: Attempt) -> None:
    """End a turn the cap stopped: the notice is written (an error the client shows) and spoken
    (audio made at start-up), and the turn is done with status `cap_reached`."""
    push(Out(attempt, PipelineError(ErrorCode.CAP_REACHED, CAP_NOTICE, attempt.turn_id)))
    push(ReplyDone(attempt, TurnStatus.CAP_REACHED, apology=True))


def prompt_estimate(messages: Sequence[Any]) -> int:
    """More tokens than the prompt will really have (chat markers included)."""
    return sum(len(m.content) // CHARS_PER_TOKEN_LOW + 8 for m in messages)


def capped(engines: Any, allowance: AllowanceStage) -> Any:
    """The session's view of the shared engines: the same engines, asking the allowance first."""
    return replace(
        engines,
        stt=CappedSTT(engines.stt, allowance),
        llm=CappedLLM(engines.llm, allowance),
        tts=CappedTTS(engines.tts, allowance),
    )

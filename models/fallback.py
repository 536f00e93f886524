"""Fallback chains: an engine of one kind made of several, tried in order.

Each attempt has a deadline for its first output and, for streams, for every output after that,
so an engine that accepts the request and then goes silent is abandoned as surely as one that
errors. A chain is itself an engine, so chains compose and the pipeline never knows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

import numpy as np

from models.base import (
    ChatMessage,
    EngineError,
    EngineInfo,
    GenerationRequest,
    LanguageModel,
    SpeechToText,
    SynthesizedAudio,
    TextToSpeech,
    Transcription,
    VoiceSettings,
)

log = logging.getLogger(__name__)

FallbackHook = Callable[[str, EngineInfo, EngineInfo, str], None]  # kind, failed, next, reason
T = TypeVar("T")


def _chain_info(kind: str, engines: Sequence[object]) -> EngineInfo:
    infos = [getattr(e, "info") for e in engines]  # noqa: B009
    return EngineInfo(kind, ">".join(i.provider for i in infos), ">".join(i.model for i in infos))


async def _stream_with_deadlines(
    stream: AsyncIterator[T], first_s: float, idle_s: float, produced: list[bool]
) -> AsyncIterator[T]:
    iterator = aiter(stream)
    try:
        while True:
            try:
                item = await asyncio.wait_for(anext(iterator), first_s if not produced[0] else idle_s)
            except StopAsyncIteration:
                return
            produced[0] = True
            yield item
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


class _Chain:
    kind = ""

    def __init__(
        self,
        engines: Sequence[object],
        *,
        first_output_timeout_s: float,
        idle_timeout_s: float,
        on_fallback: FallbackHook | None = None,
    ) -> None:
        if not engines:
            raise ValueError("a fallback chain needs at least one engine")
        self.engines = list(engines)
        self.first_output_timeout_s = first_output_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.on_fallback = on_fallback
        self.info = _chain_info(self.kind, engines)
        self.sample_rate = getattr(engines[0], "sample_rate", 16_000)

    def _failed(self, index: int, exc: BaseException) -> None:
        reason = "timeout" if isinstance(exc, TimeoutError) else "error"
        current = self.engines[index].info  # type: ignore[attr-defined]
        if index + 1 < len(self.engines):
            following = self.engines[index + 1].info  # type: ignore[attr-defined]
            log.warning("%s engine %s failed (%s); falling back to %s", self.kind, current.provider,
                        reason, following.provider)
            if self.on_fallback:
                self.on_fallback(self.kind, current, following, reason)

    async def aclose(self) -> None:
        for engine in self.engines:
            await engine.aclose()  # type: ignore[attr-defined]


class FallbackSTT(_Chain, SpeechToText):
    kind = "stt"

    async def transcribe(self, audio: np.ndarray, *, partial: bool = False) -> Transcription:
        last: BaseException | None = None
        for index, engine in enumerate(self.engines):
            try:
                return await asyncio.wait_for(
                    engine.transcribe(audio, partial=partial), self.first_output_timeout_s
                )
            except (EngineError, TimeoutError) as exc:
                last = exc
                self._failed(index, exc)
        raise EngineError(f"every speech-to-text engine failed: {last}")


class FallbackLLM(_Chain, LanguageModel):
    kind = "llm"

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        last: BaseException | None = None
        for index, engine in enumerate(self.engines):
            attempt = GenerationRequest(request.messages, request.max_tokens, request.temperature)
            produced = [False]
            try:
                async for piece in _stream_with_deadlines(
                    engine.stream(attempt), self.first_output_timeout_s, self.idle_timeout_s, produced
                ):
                    yield piece
                return
            except (EngineError, TimeoutError) as exc:
                last = exc
                attempt.cancel.set()
                if produced[0]:
                    # Half an answer was already spoken; restarting elsewhere would repeat it.
                    raise EngineError(f"{engine.info.provider} stopped mid-answer: {exc}") from exc
                self._failed(index, exc)
            finally:
                # Stops the engine's worker whenever the consumer leaves (cancel, barge-in, shorten).
                attempt.cancel.set()
                # Every attempt's tokens are metered, including the ones that failed.
                request.usage.prompt_tokens += attempt.usage.prompt_tokens
                request.usage.completion_tokens += attempt.usage.completion_tokens
        raise EngineError(f"every language model failed: {last}")


    async def prefill(self, messages: Sequence[ChatMessage]) -> int:
        return await self.engines[0].prefill(messages)  # type: ignore[attr-defined]


class FallbackTTS(_Chain, TextToSpeech):
    kind = "tts"

    async def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[SynthesizedAudio]:
        last: BaseException | None = None
        for index, engine in enumerate(self.engines):
            produced = [False]
            try:
                async for chunk in _stream_with_deadlines(
                    engine.synthesize(text, voice), self.first_output_timeout_s, self.idle_timeout_s,
                    produced,
                ):
                    yield chunk
                return
            except (EngineError, TimeoutError) as exc:
                last = exc
                if produced[0]:
                    raise EngineError(f"{engine.info.provider} stopped mid-sentence: {exc}") from exc
                self._failed(index, exc)
        raise EngineError(f"every text-to-speech engine failed: {last}")

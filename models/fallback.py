"""Fallback chains: an engine of one kind made of several, tried in order.

An attempt is abandoned when its engine raises `EngineError` or when the caller's deadline for the
call passes with the action "fallback" (it sets `CallControl.switch`, see models/base.py); the
chain has no timeouts of its own, so the latency budgets are the only deadlines. An engine that
failed sits out a cooldown: later calls go to the next engine first instead of waiting on a dead
one every turn, and it is tried again once the cooldown is over (or as a last resort when every
other engine has failed too). Once an attempt has produced output, a failure is fatal: half an
answer is never restarted elsewhere.

`FallbackChain` holds the order, cooldowns and switching; `FallbackSTT`, `FallbackLLM` and
`FallbackTTS` only adapt it to their kind's interface. A chain is itself an engine, so chains
compose and the pipeline never knows.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from models.base import (
    CallControl,
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
    call_scope,
    current_call,
)

log = logging.getLogger(__name__)

FallbackHook = Callable[[str, EngineInfo, EngineInfo, str], None]  # kind, failed, next, reason
Clock = Callable[[], float]
E = TypeVar("E")
T = TypeVar("T")

DEFAULT_COOLDOWN_S = 30.0


class _Switched(Exception):
    """The caller's deadline passed before the attempt produced anything."""


class FallbackChain(Generic[E]):
    """Engines of one kind, tried in order; the kind-neutral core of every fallback wrapper."""

    def __init__(
        self,
        kind: str,
        engines: Sequence[E],
        *,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        on_fallback: FallbackHook | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if not engines:
            raise ValueError("a fallback chain needs at least one engine")
        self.kind = kind
        self.engines = list(engines)
        self.cooldown_s = cooldown_s
        self.on_fallback = on_fallback
        self.clock = clock
        self._cooling_until = [float("-inf")] * len(self.engines)
        infos = [self.info_of(i) for i in range(len(self.engines))]
        self.info = EngineInfo(kind, ">".join(i.provider for i in infos), ">".join(i.model for i in infos))

    def info_of(self, index: int) -> EngineInfo:
        return self.engines[index].info  # type: ignore[attr-defined,no-any-return]

    def order(self) -> list[int]:
        """Engines to try for a new call: those not cooling down first, in configured order, then
        the cooling ones as a last resort, soonest back first."""
        now = self.clock()
        ready = [i for i in range(len(self.engines)) if self._cooling_until[i] <= now]
        cooling = sorted(set(range(len(self.engines))) - set(ready), key=lambda i: self._cooling_until[i])
        return ready + cooling

    def _failed(self, index: int, following: int | None, reason: str, detail: object) -> None:
        self._cooling_until[index] = self.clock() + self.cooldown_s
        if following is None:
            return
        failed, nxt = self.info_of(index), self.info_of(following)
        log.warning("%s engine %s failed (%s: %s); falling back to %s", self.kind, failed.provider,
                    reason, detail, nxt.provider)
        if self.on_fallback:
            self.on_fallback(self.kind, failed, nxt, reason)

    def _served(self, index: int, child: CallControl, control: CallControl) -> None:
        self._cooling_until[index] = float("-inf")  # it works again, whatever it did before
        control.served_by = child.served_by or self.info_of(index)

    async def call(self, run: Callable[[E], Awaitable[T]]) -> T:
        """One result per call (a transcription): the first engine to return it wins."""
        control = current_call()
        order = self.order()
        last: BaseException | None = None
        for position, index in enumerate(order):
            following = order[position + 1] if position + 1 < len(order) else None
            child = CallControl()
            with call_scope(child):
                task = asyncio.ensure_future(run(self.engines[index]))
            try:
                result = await _unless_switched(task, control, child, can_switch=following is not None)
            except _Switched:
                last = TimeoutError("deadline passed")
                self._failed(index, following, "deadline", "the caller's deadline passed")
                continue
            except EngineError as exc:
                last = exc
                self._failed(index, following, "error", exc)
                continue
            self._served(index, child, control)
            return result
        raise _exhausted(self.kind, last)

    async def stream(
        self, open_stream: Callable[[E], AsyncIterator[T]], abandon: Callable[[], None] = lambda: None
    ) -> AsyncIterator[T]:
        """A stream per call (tokens, audio chunks). `open_stream` starts an attempt on one
        engine; `abandon` is called when the chain leaves that attempt before its end, so the
        wrapper can stop work the engine runs on its own threads."""
        control = current_call()
        order = self.order()
        last: BaseException | None = None
        for position, index in enumerate(order):
            following = order[position + 1] if position + 1 < len(order) else None
            child = CallControl()
            with call_scope(child):  # the attempt's own code runs, and reads its scope, in here
                iterator = aiter(open_stream(self.engines[index]))
                first = asyncio.ensure_future(_next(iterator))
            produced = False
            try:
                try:
                    item = await _unless_switched(first, control, child, can_switch=following is not None)
                except StopAsyncIteration:
                    self._served(index, child, control)
                    return
                produced = True
                self._served(index, child, control)
                yield item
                # From here a switch is ignored, so the rest needs no racing.
                while True:
                    with call_scope(child):
                        try:
                            item = await anext(iterator)
                        except StopAsyncIteration:
                            return
                    yield item
            except _Switched:
                last = TimeoutError("deadline passed")
                self._failed(index, following, "deadline", "the caller's deadline passed")
            except EngineError as exc:
                last = exc
                if produced:
                    raise EngineError(
                        f"{self.info_of(index).provider} stopped mid-output: {exc}", code=exc.code
                    ) from exc
                self._failed(index, following, "error", exc)
            finally:
                # Whenever the chain leaves an attempt (switch, error, or the consumer leaving on a
                # cancel or barge-in), stop its engine.
                abandon()
                await _close(iterator)
        raise _exhausted(self.kind, last)

    async def aclose(self) -> None:
        for engine in self.engines:
            await engine.aclose()  # type: ignore[attr-defined]


async def _unless_switched(task: asyncio.Future[T], control: CallControl, child: CallControl,
                           *, can_switch: bool) -> T:
    """The task's result, or `_Switched` if the caller asks to switch first. With nowhere to
    switch to, the request is passed on to the attempt (a nested chain may have somewhere)."""
    try:
        while True:
            if not control.switch.is_set():
                waiter = asyncio.ensure_future(control.switch.wait())
                try:
                    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
            if task.done():
                return task.result()
            control.switch.clear()  # acted on: the caller may ask again at a later deadline
            if can_switch:
                raise _Switched
            child.switch.set()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _next(iterator: AsyncIterator[T]) -> T:
    return await anext(iterator)  # a coroutine, so it can run as a task of its own


async def _close(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except RuntimeError:
            pass  # the generator was still running in a cancelled task and is closed already


def _exhausted(kind: str, last: BaseException | None) -> EngineError:
    code = last.code if isinstance(last, EngineError) else "engine_error"
    return EngineError(f"every {kind} engine failed; the last: {last}", code=code)


class _LinkedCancel(threading.Event):
    """An attempt's cancel flag that is also set when the caller's is: adapters poll `is_set()`
    between tokens, and the chain must be able to stop one attempt without cancelling the call."""

    def __init__(self, caller: threading.Event) -> None:
        super().__init__()
        self._caller = caller

    def is_set(self) -> bool:
        return super().is_set() or self._caller.is_set()


class _ChainEngine:
    """What every kind's wrapper shares: a chain, the chain's info, the first engine's audio rate."""

    kind = ""

    def __init__(
        self,
        engines: Sequence[Any],
        *,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        on_fallback: FallbackHook | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.chain: FallbackChain[Any] = FallbackChain(
            self.kind, engines, cooldown_s=cooldown_s, on_fallback=on_fallback, clock=clock
        )
        self.engines = self.chain.engines
        self.info = self.chain.info
        self.sample_rate = getattr(engines[0], "sample_rate", 16_000)

    @property
    def busy(self) -> bool:
        return bool(getattr(self.engines[self.chain.order()[0]], "busy", False))

    async def aclose(self) -> None:
        await self.chain.aclose()


class FallbackSTT(_ChainEngine, SpeechToText):
    kind = "stt"

    async def transcribe(self, audio: np.ndarray, *, partial: bool = False) -> Transcription:
        return await self.chain.call(lambda engine: engine.transcribe(audio, partial=partial))

    async def warm_up(self) -> None:
        for engine in self.engines:
            await engine.warm_up()


class FallbackLLM(_ChainEngine, LanguageModel):
    kind = "llm"

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        attempts: list[GenerationRequest] = []

        def open_stream(engine: LanguageModel) -> AsyncIterator[str]:
            cancel = _LinkedCancel(request.cancel)
            attempt = GenerationRequest(
                request.messages, request.max_tokens, request.temperature, cancel, seed=request.seed
            )
            attempts.append(attempt)
            return engine.stream(attempt)

        def abandon() -> None:
            attempts[-1].cancel.set()

        try:
            async for piece in self.chain.stream(open_stream, abandon):
                # Running totals, so a consumer that stops early still reads exact usage.
                request.usage.prompt_tokens = sum(a.usage.prompt_tokens for a in attempts)
                request.usage.completion_tokens = sum(a.usage.completion_tokens for a in attempts)
                yield piece
        finally:
            # Every attempt's tokens are metered, including those of attempts that failed.
            request.usage.prompt_tokens = sum(a.usage.prompt_tokens for a in attempts)
            request.usage.completion_tokens = sum(a.usage.completion_tokens for a in attempts)

    async def prefill(self, messages: Sequence[ChatMessage]) -> int:
        # Into the engine the next call will go to, so the cache read is not wasted.
        return await self.engines[self.chain.order()[0]].prefill(messages)  # type: ignore[no-any-return]

    async def warm_up(self, prefixes: Sequence[Sequence[ChatMessage]] = ()) -> None:
        for engine in self.engines:
            await engine.warm_up(prefixes)


class FallbackTTS(_ChainEngine, TextToSpeech):
    kind = "tts"

    async def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[SynthesizedAudio]:
        async for chunk in self.chain.stream(lambda engine: engine.synthesize(text, voice)):
            yield chunk

    async def warm_up(self) -> None:
        for engine in self.engines:
            await engine.warm_up()


FALLBACKS: dict[str, type[_ChainEngine]] = {"stt": FallbackSTT, "llm": FallbackLLM, "tts": FallbackTTS}


def fallback_chain(
    kind: str,
    engines: Sequence[Any],
    *,
    cooldown_s: float = DEFAULT_COOLDOWN_S,
    on_fallback: FallbackHook | None = None,
) -> Any:
    """The engine for `kind` made of `engines` in order (the only engine itself if just one)."""
    if len(engines) == 1:
        return engines[0]
    if kind not in FALLBACKS:
        raise ValueError(f"{kind} engines cannot be chained; chains exist for {', '.join(FALLBACKS)}")
    return FALLBACKS[kind](engines, cooldown_s=cooldown_s, on_fallback=on_fallback)

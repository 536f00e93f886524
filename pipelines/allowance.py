"""Usage caps: a session never sends a provider more work than it is allowed.

Caps are integer units per engine kind (the units the ledger bills: audio milliseconds
transcribed, LLM tokens, TTS characters), or cost. A session has its own caps, and it may share
caps with every other session of its student, its classroom or a school key (`pipelines.quota`).
`AllowanceStage` adds up every `Usage` frame of the session; the engines a capped session uses
are wrapped so that each call first asks it. A call that would go over any cap is never made:
the wrapper raises `EngineError(code="cap_reached")`, the client gets one `CapReached` event per
scope, kind and unit, and the turn ends with a declared notice, spoken from audio synthesised at
start-up (so a TTS cap is no reason to call TTS) and written.

A call's cost is known before it is made for speech (audio length, characters) and bounded for
the language model: its prompt is estimated high (three characters a token; English runs about
four) and its answer is cut at what is left, so the cap holds without asking the model first.
Against a shared cap the call's estimate is also *held* until its real use is reported, so two
sessions can never both be given the last units.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from models.base import (
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
from pipelines.budgets import CAP_NOTICE
from pipelines.caps import UNIT, CapKind, UsageCaps, cap_kind_of, engine_kind_of
from pipelines.control import Out, ReplyDone, Usage
from pipelines.frames import (
    Allowance,
    CapReached,
    ErrorCode,
    Frame,
    PipelineError,
    SystemFrame,
    TurnStatus,
    UsageKind,
)
from pipelines.processor import Stage
from pipelines.quota import TTS_MS_PER_CHAR_HIGH, Line, Quota
from pipelines.turn import Attempt


CAP_REACHED = "cap_reached"  # EngineError.code of a call the cap refused
CHARS_PER_TOKEN_LOW = 3  # a high estimate of a prompt's tokens: English averages ~4 characters


@dataclass(slots=True)
class Reservation:
    """A call let through: the units held for it in the shared quotas, by usage kind."""

    kind: CapKind
    need: dict[Line, int]
    settled: bool = False


class AllowanceStage(Stage):
    """Keeps the session's running use per kind and answers "may this call go out?"; charges the
    quotas the session shares (per engine kind: its student's, its classroom's, its engine's key)."""

    name = "allowance"

    def __init__(self, caps: UsageCaps, quotas: Mapping[CapKind, Sequence[Quota]] | None = None) -> None:
        super().__init__()
        self.caps = caps
        self.quotas: dict[CapKind, tuple[Quota, ...]] = {k: tuple(v) for k, v in (quotas or {}).items() if v}
        self.used: dict[CapKind, int] = dict.fromkeys(UNIT, 0)
        self._announced: set[tuple[str, CapKind, str]] = set()
        # What this session holds in its quotas, and the bookkeeping that gives it back: a hold
        # stays until the real use it stands for has been reported (Usage), however late.
        self._held: dict[Line, int] = {}
        self._open: dict[UsageKind, int] = {}  # reserved by calls still running
        self._settled: dict[UsageKind, int] = {}  # real use of finished calls, as they saw it
        self._reported: dict[UsageKind, int] = {}  # real use reported by the stages

    @property
    def shared(self) -> bool:
        return bool(self.quotas)

    def on_system(self, frame: SystemFrame) -> None:
        if not isinstance(frame, Usage) or frame.amount <= 0:
            return
        if (kind := cap_kind_of(frame.kind)) is not None:
            self.used[kind] += frame.amount
        quotas = self.quotas.get(engine_kind_of(frame.kind), ())
        if quotas:
            line = (frame.kind, frame.engine.provider, frame.engine.model)
            for quota in quotas:
                quota.charge(line, frame.amount)
            self._reported[frame.kind] = self._reported.get(frame.kind, 0) + frame.amount
            self._rebalance(frame.kind)

    def remaining(self, kind: CapKind) -> int | None:
        limit = self.caps.limit(kind)
        return None if limit is None else max(0, limit - self.used[kind])

    def permit(self, kind: CapKind, need: int) -> None:
        """Raise (and tell the client, once) unless `need` more units fit under the session's cap."""
        left = self.remaining(kind)
        if left is None or need <= left:
            return
        limit = self.caps.limit(kind)
        assert limit is not None
        self._refuse("session", kind, UNIT[kind], limit, self.used[kind], "session", None)

    def reserve(self, kind: CapKind, need: Mapping[Line, int]) -> Reservation:
        """Check one call against every cap and hold its estimate in the shared quotas, in one
        step (nothing awaits in between, so no other session's call can slip in). Raises
        EngineError(cap_reached), telling the client once per scope, kind and unit."""
        self.permit(kind, sum(n for (uk, _, _), n in need.items() if cap_kind_of(uk) == kind))
        for quota in self.quotas.get(kind, ()):
            refusal = quota.refusal(need)
            if refusal is not None:
                currency = quota.prices.currency if refusal.unit == "minor_units" and quota.prices else None
                self._refuse(
                    quota.scope, kind, refusal.unit, refusal.limit, refusal.used, quota.period, currency
                )
        reservation = Reservation(kind, {line: n for line, n in need.items() if n > 0})
        if self.quotas.get(kind):
            for quota in self.quotas[kind]:
                quota.hold(reservation.need)
            for line, n in reservation.need.items():
                self._held[line] = self._held.get(line, 0) + n
                self._open[line[0]] = self._open.get(line[0], 0) + n
        return reservation

    def settle(self, reservation: Reservation, actual: Mapping[UsageKind, int]) -> None:
        """The call is over and used `actual`: what it will not use is given back now, what it
        did use stays held until reported."""
        if reservation.settled:
            return
        reservation.settled = True
        if not self.quotas.get(reservation.kind):
            return
        for uk in {line[0] for line in reservation.need} | set(actual):
            self._open[uk] = self._open.get(uk, 0) - sum(n for l, n in reservation.need.items() if l[0] == uk)
            self._settled[uk] = self._settled.get(uk, 0) + max(0, actual.get(uk, 0))
            self._rebalance(uk)

    def _rebalance(self, uk: UsageKind) -> None:
        """Hold exactly what is reserved by running calls plus what finished calls used and has
        not been reported yet; give the rest back."""
        settled, reported = self._settled.get(uk, 0), self._reported.get(uk, 0)
        gone = min(settled, reported)
        settled, reported = settled - gone, reported - gone
        if self._open.get(uk, 0) <= 0:
            reported = 0  # reports beyond what any call saw (a late token): nothing left to cover
        self._settled[uk], self._reported[uk] = settled, reported
        target = max(0, self._open.get(uk, 0) + settled - reported)
        excess = sum(n for line, n in self._held.items() if line[0] == uk) - target
        quotas = self.quotas.get(engine_kind_of(uk), ())
        for line in [line for line in self._held if line[0] == uk]:
            if excess <= 0:
                break
            give = min(excess, self._held[line])
            for quota in quotas:
                quota.release(line, give)
            self._held[line] -= give
            if not self._held[line]:
                del self._held[line]
            excess -= give

    def release_all(self) -> None:
        """The session is over: nothing more will be reported, so nothing stays held."""
        for line, n in self._held.items():
            for quota in self.quotas.get(engine_kind_of(line[0]), ()):
                quota.release(line, n)
        self._held.clear()
        self._open.clear()
        self._settled.clear()
        self._reported.clear()

    def allowances(self) -> tuple[Allowance, ...]:
        """Every cap that applies to this session and what is used of it, for the client."""
        rows: list[Allowance] = []
        for kind in UNIT:
            limit = self.caps.limit(kind)
            if limit is not None:
                rows.append(Allowance("session", kind, UNIT[kind], limit, self.used[kind], "session"))
        seen: set[int] = set()
        for quota in (q for quotas in self.quotas.values() for q in quotas):
            if id(quota) in seen:
                continue
            seen.add(id(quota))
            for kind, unit, limit, used in quota.remaining():
                currency = quota.prices.currency if kind is None and quota.prices else None
                rows.append(Allowance(quota.scope, kind, unit, limit, used, quota.period, currency))
        return tuple(rows)

    def _refuse(
        self, scope: str, kind: CapKind, unit: str, limit: int, used: int, period: str, currency: str | None
    ) -> None:
        if (scope, kind, unit) not in self._announced:
            self._announced.add((scope, kind, unit))
            self.push(CapReached(kind, unit, limit, used, scope, period, currency))
        raise EngineError(f"the {scope}'s {kind} cap ({unit}) is reached", code=CAP_REACHED)

    def line(self, engine: Any, uk: UsageKind, units: int) -> Line:
        """The bill line to hold a call's estimate on: of the engines that may serve it (a
        fallback chain's members), the one that would cost most."""
        infos: list[EngineInfo] = [e.info for e in getattr(engine, "engines", None) or [engine]]
        prices = next((q.prices for qs in self.quotas.values() for q in qs if q.prices is not None), None)
        if prices is None or len(infos) == 1:
            return (uk, infos[0].provider, infos[0].model)

        def cost(info: EngineInfo) -> int:
            price = prices.find(info.provider, info.model, uk)
            return 0 if price is None else price.cost(units)

        best = max(infos, key=cost)
        return (uk, best.provider, best.model)

    def fit_answer(self, prompt: Mapping[Line, int], answer: Line, most: int) -> int:
        """The most tokens of answer (up to `most`) that fit beside the prompt in every quota."""
        for quota in self.quotas.get("llm", ()):
            low, high = 0, most
            while low < high:
                middle = (low + high + 1) // 2
                if quota.refusal({**prompt, answer: middle}) is None:
                    low = middle
                else:
                    high = middle - 1
            most = low
        return most


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
        ms = len(audio) * 1000 // self._inner.sample_rate
        uk = UsageKind.STT_PARTIAL_AUDIO_MS if partial else UsageKind.STT_AUDIO_MS
        hold = self._allowance.reserve("stt", {self._allowance.line(self._inner, uk, ms): ms})
        used = 0
        try:
            result = await self._inner.transcribe(audio, partial=partial)
            used = result.audio_ms
            return result  # type: ignore[no-any-return]
        finally:
            self._allowance.settle(hold, {uk: used})


class CappedLLM(_Wrapped, LanguageModel):
    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        allowance = self._allowance
        prompt = prompt_estimate(request.messages)
        left = allowance.remaining("llm")
        allowance.permit("llm", prompt + 1)  # at least one token of answer
        if left is not None:
            request.max_tokens = max(1, min(request.max_tokens, left - prompt))
        need = {allowance.line(self._inner, UsageKind.LLM_PROMPT_TOKENS, prompt): prompt}
        answer = allowance.line(self._inner, UsageKind.LLM_COMPLETION_TOKENS, request.max_tokens)
        request.max_tokens = max(1, allowance.fit_answer(need, answer, request.max_tokens))
        hold = allowance.reserve("llm", {**need, answer: request.max_tokens})
        try:
            async for piece in self._inner.stream(request):
                yield piece
        finally:
            allowance.settle(
                hold,
                {
                    UsageKind.LLM_PROMPT_TOKENS: request.usage.prompt_tokens,
                    UsageKind.LLM_COMPLETION_TOKENS: request.usage.completion_tokens,
                },
            )

    async def prefill(self, messages: Sequence[Any]) -> int:
        allowance = self._allowance
        prompt = prompt_estimate(messages)
        left = allowance.remaining("llm")
        if left is not None and prompt > left:
            return 0  # optional work: skipped quietly, the answer will say why
        line = allowance.line(self._inner, UsageKind.LLM_PROMPT_TOKENS, prompt)
        if allowance.shared and any(q.refusal({line: prompt}) for q in allowance.quotas.get("llm", ())):
            return 0  # likewise for a shared cap, and without announcing it
        hold = allowance.reserve("llm", {line: prompt})
        tokens = 0
        try:
            tokens = int(await self._inner.prefill(messages))
            return tokens
        finally:
            allowance.settle(hold, {UsageKind.LLM_PROMPT_TOKENS: tokens})


class CappedTTS(_Wrapped, TextToSpeech):
    async def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[SynthesizedAudio]:
        allowance = self._allowance
        chars, ms = len(text), len(text) * TTS_MS_PER_CHAR_HIGH
        hold = allowance.reserve(
            "tts",
            {
                allowance.line(self._inner, UsageKind.TTS_CHARS, chars): chars,
                allowance.line(self._inner, UsageKind.TTS_AUDIO_MS, ms): ms,
            },
        )
        made = 0
        try:
            async for audio in self._inner.synthesize(text, voice):
                made += audio.duration_ms
                yield audio
        finally:
            allowance.settle(hold, {UsageKind.TTS_CHARS: chars, UsageKind.TTS_AUDIO_MS: made})


def end_at_cap(push: Callable[[Frame], None], attempt: Attempt) -> None:
    """End a turn the cap stopped: the notice is written (an error the client shows) and spoken
    (audio made at start-up), and the turn is done with status `cap_reached`."""
    push(Out(attempt, PipelineError(ErrorCode.CAP_REACHED, CAP_NOTICE, attempt.turn_id)))
    push(ReplyDone(attempt, TurnStatus.CAP_REACHED, apology=True))


def key_id_of(engine: Any) -> str | None:
    """The school key an engine bills (issue 12 gives engines one): its `key_id`, if it has one.
    A fallback chain is charged to a key only when the chain itself carries it."""
    key = getattr(engine, "key_id", None)
    return key if isinstance(key, str) and key else None


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

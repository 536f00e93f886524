"""One session's voice loop, wired from stages; knows nothing about sockets.

    audio / text in -> endpointing -> transcription -> reply -> speech -> gate -> playout -> outbox
                                 (system frames reach every stage at once, budget watch and
                                  metering included; they see every mark, usage and turn change)

A transport feeds 16 kHz mono PCM16 and typed input through the methods below and receives
`pipelines.frames` output events through its sink, in order, one at a time.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from models.base import LanguageModel, SpeechToText, TextToSpeech, TurnCompletion, VoiceActivityDetector
from pipelines.agent import TutorAgent
from pipelines.allowance import AllowanceStage, capped
from pipelines.caps import CapKind, UsageCaps
from pipelines.config import PipelineConfig
from pipelines.control import Mark, Out
from pipelines.fillers import FillerCache
from pipelines.stock_speech import StockSpeech
from pipelines.frames import (
    OUTPUT_EVENTS,
    AudioIn,
    DataFrame,
    Frame,
    Interrupt,
    InterruptReason,
    PipelineEvent,
    RepeatLast,
    ReplyAudio,
    SystemFrame,
    TextIn,
    TurnUsage,
    UpdateSettings,
)
from pipelines.processor import Broadcast, Stage
from pipelines.quota import Quota
from pipelines.stages.budget_watch import BudgetWatch
from pipelines.stages.endpointing import EndpointingStage
from pipelines.stages.gate import SpeculationGate
from pipelines.stages.metering import MeteringStage
from pipelines.stages.playout import PlayoutStage
from pipelines.stages.reply import ReplyStage
from pipelines.stages.speech import SpeechStage
from pipelines.stages.transcription import TranscriptionStage
from pipelines.turn import Attempt, Turns

log = logging.getLogger(__name__)

EventSink = Callable[[PipelineEvent], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Engines:
    vad: VoiceActivityDetector
    stt: SpeechToText
    llm: LanguageModel
    tts: TextToSpeech
    fillers: FillerCache | None = None
    turn: TurnCompletion | None = None  # scores "finished or thinking?" at a pause; optional
    stock: StockSpeech | None = None  # the tutor's vetted lines as audio, shared by every session


class Outbox(Stage):
    """The end of the line: output events to the transport's sink, one at a time, in order."""

    name = "outbox"

    def __init__(self, sink: EventSink, clock: Callable[[], float], on_failure: Callable[[], None]) -> None:
        super().__init__()
        self._sink = sink
        self._clock = clock
        self._on_failure = on_failure
        self._heard_from: weakref.WeakSet[Attempt] = weakref.WeakSet()
        self.failed = False

    def on_system(self, frame: SystemFrame) -> None:
        if isinstance(frame, OUTPUT_EVENTS):
            self.enqueue(frame)  # type: ignore[arg-type]

    async def process(self, frame: DataFrame) -> None:
        attempt = None
        event: Frame = frame
        if isinstance(frame, Out):
            attempt, event = frame.attempt, frame.event
            if isinstance(event, ReplyAudio) and (attempt.stopped or attempt.discarded):
                return  # queued before the interruption: the student must not hear it
        if self.failed or not isinstance(event, OUTPUT_EVENTS):
            return
        try:
            await self._sink(event)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - a dead transport ends the session, not the server
            log.info("event sink failed; closing pipeline", exc_info=True)
            self.failed = True
            self._on_failure()
            return
        if attempt is not None and isinstance(event, ReplyAudio) and attempt not in self._heard_from:
            self._heard_from.add(attempt)
            self.push(Mark(attempt, "first_audio_sent", self._clock()))


class Pipeline:
    def __init__(
        self,
        engines: Engines,
        agent: TutorAgent,
        sink: EventSink,
        config: PipelineConfig | None = None,
        *,
        session_id: str = "",
        clock: Callable[[], float] = time.monotonic,
        quotas: Mapping[CapKind, Sequence[Quota]] | None = None,
        adjustable_caps: bool = False,
    ) -> None:
        self.engines = engines
        self.config = config = config or PipelineConfig()
        self._clock = clock
        self._closed = False
        self.turns = Turns(lambda frame: self._broadcast(frame), clock)
        turn = config.turn
        # A capped session sees the shared engines through its allowance, which every call asks.
        # `quotas`: the caps it shares with other sessions (its student's, classroom's, keys').
        shared = any(quotas.values()) if quotas else False
        # `adjustable_caps`: caps may be set later (a teacher's console), so every call is counted.
        self._allowance = (
            AllowanceStage(config.caps, quotas) if config.caps.any or shared or adjustable_caps else None
        )
        if self._allowance is not None:
            engines = capped(engines, self._allowance)
        self._transcription = TranscriptionStage(engines.stt, self.turns, clock, prefill=turn.prefill)
        self._reply = ReplyStage(
            engines.llm, agent, self.turns, clock, speculative=turn.speculative_reply, lesson_plans=config.lesson_plans
        )
        self._speech = SpeechStage(engines.tts, agent.persona.voice, engines.fillers, clock, engines.stock)
        self._metering = MeteringStage(
            session_id, allowances=self._allowance.allowances if self._allowance is not None else None
        )
        chain: list[Stage] = [
            EndpointingStage(
                engines.vad,
                turn,
                self.turns,
                clock,
                partial_ready=self._transcription.partial_ready,
                turn_model=engines.turn,
                lesson=self._reply,
            ),
            self._transcription,
            self._reply,
            self._speech,
            SpeculationGate(),
            PlayoutStage(self.turns, clock, lead_ms=config.playback_lead_ms, chunk_ms=config.audio_chunk_ms),
            Outbox(sink, clock, self._sink_failed),
        ]
        watch = BudgetWatch(config.budgets, self.turns, self._metering.marks, clock)
        sides: list[Stage] = [self._metering, *([self._allowance] if self._allowance else []), watch]
        self._stages = [*chain, *sides]  # marks are recorded before they are watched
        self._broadcast = Broadcast(self._stages)
        outbox = chain[-1]
        for stage, following in zip(chain, [*chain[1:], None], strict=True):
            stage.start(following, self._broadcast)
        for side in sides:
            side.start(outbox, self._broadcast)  # their output events go straight out

    @property
    def agent(self) -> TutorAgent:
        return self._reply.agent

    @property
    def usage_total(self) -> TurnUsage:
        return self._metering.session_total

    # ----------------------------------------------------------------------------------- input

    def push_audio(self, pcm16: bytes) -> None:
        """Feed 16 kHz mono PCM16, like a microphone, silence included."""
        if not self._closed:
            self._stages[0].enqueue(AudioIn(pcm16, self._clock()))

    async def submit_text(self, text: str) -> str:
        """Typed input: the accessibility path. Returns the new turn's id."""
        await self.interrupt(InterruptReason.TEXT_INPUT)
        turn_id = self.turns.new_turn_id()
        self._stages[0].enqueue(TextIn(turn_id, text))
        return turn_id

    async def cancel_reply(self) -> bool:
        return await self.interrupt(InterruptReason.CANCEL)

    async def repeat_last(self) -> bool:
        """Say the last answer again, as it was heard, without asking the model again."""
        last = self._reply.last_answer()
        if not last:
            return False
        await self.interrupt(InterruptReason.TEXT_INPUT)
        self._stages[0].enqueue(RepeatLast(self.turns.new_turn_id(), last))
        return True

    def set_caps(self, caps: UsageCaps) -> bool:
        """New caps for the rest of the session, counted against what it has used so far. False
        when the session was started without `adjustable_caps` (and no caps) and cannot take them."""
        if self._allowance is None:
            return False
        self._allowance.caps = caps
        return True

    def set_voice_rate(self, rate: float) -> None:
        self._broadcast(UpdateSettings(voice_rate=rate))

    async def interrupt(self, reason: InterruptReason | str) -> bool:
        """Stop the reply in flight; returns once it has ended (usage settled, memory updated)."""
        active = self.turns.active
        self._broadcast(Interrupt(InterruptReason(reason)))
        if active is None or active.ending is None:
            return False
        await active.ending
        return True

    async def aclose(self) -> None:
        if self._closed:
            return
        await self.interrupt(InterruptReason.SESSION_END)
        self.turns.drop_speculation()
        self._closed = True
        for stage in self._stages:
            await stage.stop()
        if self._allowance is not None:
            self._allowance.release_all()  # nothing more will be reported: other sessions get it back

    def _sink_failed(self) -> None:
        self._closed = True
        self.turns.stop(self.turns.active, InterruptReason.SESSION_END)


# The name the rest of the server knew it by.
VoicePipeline = Pipeline

"""Transcription: the turn's words, early when possible.

At a pause it starts a speculative attempt (transcribe now, answer held back); the end of the turn
commits that attempt, or a fresh one if there was none, so confirmed work is never redone. While
the student talks it makes partial transcripts (live captions) and asks for the question heard so
far to be read into the language model's cache. Typed text becomes a turn here too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import numpy as np

from models.base import EngineError, SpeechToText, Transcription, call_scope
from models.scheduling import Priority, Urgency, work_scope
from pipelines.allowance import CAP_REACHED, end_at_cap
from pipelines.control import (
    AttemptDiscarded,
    AttemptEnded,
    EndOfTurn,
    HeardSoFar,
    Mark,
    Out,
    PartialAudio,
    Paused,
    PrefillRequest,
    ReplyDone,
    Resumed,
    Transcript,
    Usage,
    UsePartialTranscript,
)
from pipelines.frames import (
    DataFrame,
    ErrorCode,
    PipelineError,
    SystemFrame,
    TextIn,
    TranscriptPartial,
    TranscriptSource,
    TurnStatus,
    UsageKind,
)
from pipelines.processor import Stage
from pipelines.turn import Attempt, Turns

log = logging.getLogger(__name__)


class TranscriptionStage(Stage):
    name = "transcription"

    def __init__(self, stt: SpeechToText, turns: Turns, clock: Callable[[], float], *, prefill: bool) -> None:
        super().__init__()
        self._stt = stt
        self._turns = turns
        self._clock = clock
        self._prefill = prefill
        self._partial: asyncio.Task[None] | None = None
        self._partial_transcribing = False  # the partial task is in its STT call (not its prefill)
        # An STT budget miss with action partial_transcript answers the latest partial instead.
        self._overrides: dict[Attempt, asyncio.Future[str]] = {}

    def partial_ready(self) -> bool:
        return (self._partial is None or self._partial.done()) and not self._stt.busy

    def on_system(self, frame: SystemFrame) -> None:
        if isinstance(frame, Paused):
            self._drop_partial()
            self._turns.drop_speculation()
            attempt = self._turns.new_attempt(frame.listening)
            self._turns.speculation = attempt
            self._start(attempt, frame.audio)
        elif isinstance(frame, Resumed):
            self._turns.drop_speculation()
        elif isinstance(frame, EndOfTurn):
            self._drop_partial()
            attempt = self._turns.speculation
            if attempt is None or attempt.listening is not frame.listening:
                self._turns.drop_speculation()
                attempt = self._turns.new_attempt(frame.listening)
                self._start(attempt, frame.audio)
            self.push(Mark(attempt, "speech_end", frame.speech_end_at))
            self.push(Mark(attempt, "answer_due", frame.at if frame.held else frame.speech_end_at))
            self.push(Mark(attempt, "end_of_turn", frame.at))
            self._turns.commit(attempt)
        elif isinstance(frame, UsePartialTranscript):
            override = self._overrides.get(frame.attempt)
            partial = frame.attempt.listening.latest_partial if frame.attempt.listening else ""
            if override is not None and partial and not override.done():
                override.set_result(partial)
        elif isinstance(frame, AttemptDiscarded | AttemptEnded):
            self._overrides.pop(frame.attempt, None)

    async def process(self, frame: DataFrame) -> None:
        if isinstance(frame, TextIn):
            attempt = self._turns.new_attempt(turn_id=frame.turn_id)
            now = self._clock()
            for mark in ("speech_end", "answer_due", "end_of_turn"):
                self.push(Mark(attempt, mark, now))
            self._turns.commit(attempt)
            self.push(Mark(attempt, "transcript", self._clock()))
            self.push(Transcript(attempt, frame.text, TranscriptSource.TEXT))
        elif isinstance(frame, PartialAudio):
            if self.partial_ready():
                self._partial = asyncio.get_running_loop().create_task(self._run_partial(frame))
        else:
            self.push(frame)

    # ---------------------------------------------------------------------------------- final

    def _start(self, attempt: Attempt, audio: np.ndarray) -> None:
        override = asyncio.get_running_loop().create_future()
        self._overrides[attempt] = override
        attempt.track(asyncio.get_running_loop().create_task(self._transcribe(attempt, audio, override)))

    async def _transcribe(self, attempt: Attempt, audio: np.ndarray, override: asyncio.Future[str]) -> None:
        control = attempt.call("stt")

        async def call() -> Transcription:
            with work_scope(attempt.priority), call_scope(control):
                return await self._stt.transcribe(audio)

        stt = asyncio.get_running_loop().create_task(call())
        try:
            await asyncio.wait({stt, override}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # The call runs to the end on its worker: it is still metered when it lands.
            stt.add_done_callback(lambda done: self._meter(attempt, done, control.served_by))
            raise
        if not stt.done():  # the STT budget ran out: answer the latest partial transcript
            stt.add_done_callback(lambda done: self._meter(attempt, done, control.served_by))
            text = override.result()
        else:
            try:
                result = stt.result()
            except EngineError as exc:
                if not attempt.committed and attempt.listening is not None:
                    self.push(HeardSoFar(attempt.listening, ""))  # no words are coming: stop waiting for them
                if exc.code == CAP_REACHED:
                    end_at_cap(self.push, attempt)
                    return
                log.error("turn %s: transcription failed: %s", attempt.turn_id, exc)
                self.push(Out(attempt, PipelineError(ErrorCode.ENGINE_ERROR, "The tutor could not answer this turn.", attempt.turn_id)))
                self.push(ReplyDone(attempt, TurnStatus.FAILED, apology=True))
                return
            self._meter(attempt, stt, control.served_by)
            text = result.text
            if not attempt.committed and attempt.listening is not None:
                # Still a pause: the words' punctuation helps the turn policy decide.
                self.push(HeardSoFar(attempt.listening, text, result.sentence_end))
        self.push(Mark(attempt, "transcript", self._clock()))
        self.push(Transcript(attempt, text, TranscriptSource.SPEECH))

    def _meter(self, attempt: Attempt, done: asyncio.Task[Transcription], served_by: object) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        engine = served_by or self._stt.info
        self.push(Usage(attempt.turn_id, attempt, UsageKind.STT_AUDIO_MS, done.result().audio_ms, engine))  # type: ignore[arg-type]

    # -------------------------------------------------------------------------------- partial

    def _drop_partial(self) -> None:
        """A pause has begun: the live caption still being transcribed is stale, and on a busy
        machine its remaining steps share the cores with the transcript the answer waits for
        (measured: a partial in flight at the pause took that transcript from 178-410 ms to
        325-1053 ms). Its running step finishes on the worker; the ones after it never start. A
        prefill it already asked for goes on: the words it reads are mostly the final ones."""
        if self._partial is not None and self._partial_transcribing:
            self._partial.cancel()

    async def _run_partial(self, frame: PartialAudio) -> None:
        listening = frame.listening
        try:
            self._partial_transcribing = True
            try:
                with work_scope(Priority(Urgency.OPTIONAL)):
                    result = await self._stt.transcribe(frame.audio, partial=True)
            except asyncio.CancelledError:
                # The engine was given the audio, so it is metered like a caption that landed.
                audio_ms = len(frame.audio) * 1000 // self._stt.sample_rate
                self.push(Usage(listening.id, None, UsageKind.STT_PARTIAL_AUDIO_MS, audio_ms, self._stt.info))
                raise
            finally:
                self._partial_transcribing = False
            self.push(Usage(listening.id, None, UsageKind.STT_PARTIAL_AUDIO_MS, result.audio_ms, self._stt.info))
            if not result.text:
                return
            listening.latest_partial = result.text
            if self._turns.listening is not listening:
                return
            self.push(TranscriptPartial(listening.id, result.text))
            speculating = self._turns.speculation is not None and self._turns.speculation.listening is listening
            if frame.whole and self._prefill and not speculating:
                # Read the question heard so far into the model's cache while the student is still
                # talking: at the pause only the words that changed are left to read. Not once a
                # pause has begun: the final transcript is on its way, and this one is stale.
                done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self.push(PrefillRequest(listening, result.text, done))
                await done
        except EngineError as exc:
            if exc.code != CAP_REACHED:  # at the cap, captions simply stop
                log.warning("partial transcription or prefill failed: %s", exc)

    async def stop(self) -> None:
        if self._partial is not None:
            self._partial.cancel()
        await super().stop()

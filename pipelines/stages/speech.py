"""Speech: each piece of the reply becomes audio as soon as it exists, ahead of playback.

Also hands the playout stage the pre-synthesised phrases a budget or a failure calls for: a
filler while the answer is late, an apology when it will not come.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace

from models.base import EngineError, SynthesizedAudio, TextToSpeech, VoiceSettings, call_scope
from models.scheduling import Priority, Urgency, work_scope
from pipelines.allowance import CAP_REACHED, key_id_of
from pipelines.audio import trim_leading_silence
from pipelines.budgets import CAP_NOTICE
from pipelines.control import (
    CachedAudio,
    GiveUp,
    Mark,
    Out,
    PlayFiller,
    ReplyDone,
    Sentence,
    SpeechAudio,
    Usage,
)
from pipelines.fillers import FillerCache
from pipelines.frames import (
    DataFrame,
    ErrorCode,
    PipelineError,
    SystemFrame,
    TurnStatus,
    UpdateSettings,
    UsageKind,
)
from pipelines.processor import Stage
from pipelines.stock_speech import Key, StockSpeech
from pipelines.turn import Attempt, SpokenPiece

log = logging.getLogger(__name__)


class SpeechStage(Stage):
    name = "speech"

    def __init__(
        self,
        tts: TextToSpeech,
        voice: VoiceSettings,
        fillers: FillerCache | None,
        clock: Callable[[], float],
        stock: StockSpeech | None = None,
    ) -> None:
        super().__init__()
        self._tts = tts
        self.voice = voice
        self._fillers = fillers
        self._clock = clock
        self._stock = stock

    def on_system(self, frame: SystemFrame) -> None:
        if isinstance(frame, UpdateSettings) and frame.voice_rate is not None:
            self.voice = replace(self.voice, rate=frame.voice_rate)
        elif isinstance(frame, PlayFiller):
            attempt = frame.attempt
            filler = self._fillers.filler(self.voice) if self._fillers else None
            if filler is not None and attempt.live and not attempt.audio_started:
                # Straight to the next stage: this stage's own queue may be busy with the late answer.
                self.push(CachedAudio(attempt, filler, filler=True))
        elif isinstance(frame, GiveUp):
            stage = frame.stage.value
            error = PipelineError(ErrorCode.ENGINE_TIMEOUT, f"The tutor took too long ({stage}).", frame.attempt.turn_id)
            self.push(Out(frame.attempt, error))
            self._apologise(frame.attempt)
            self.push(ReplyDone(frame.attempt, TurnStatus.FAILED))

    async def process(self, frame: DataFrame) -> None:
        if isinstance(frame, Sentence):
            attempt = frame.attempt
            if attempt.live and not (attempt.gave_up or attempt.failed):
                await self._speak(attempt, frame.text, vetted=frame.vetted)
        elif isinstance(frame, ReplyDone):
            attempt = frame.attempt
            if attempt.gave_up or (attempt.failed and not frame.apology):
                return  # the apology and the end of this attempt are already on their way
            if frame.apology:
                self._apologise(attempt, cap=frame.status is TurnStatus.CAP_REACHED)
            self.push(ReplyDone(attempt, frame.status))
        else:
            self.push(frame)

    def _apologise(self, attempt: Attempt, *, cap: bool = False) -> None:
        fillers = self._fillers
        if fillers is None:
            return
        apology = fillers.cap_notice(self.voice) if cap else fillers.apology(self.voice)
        if apology is not None:
            self.push(CachedAudio(attempt, apology, filler=False))

    async def _speak(self, attempt: Attempt, text: str, *, vetted: bool = False) -> None:
        piece = SpokenPiece(text)
        attempt.pieces.append(piece)
        key = kept = None
        if vetted and self._stock is not None:
            key = StockSpeech.key(self._tts.info, self.voice, text, key_id_of(self._tts))
            kept = self._stock.get(key)
        if kept is not None:
            # No engine call, so nothing to meter: the student hears the line at once.
            for audio in kept:
                self._heard_audio(attempt, piece, audio)
            return
        # The first piece is as urgent as the turn; later ones have audio playing before them, so
        # other students' first pieces may go first.
        first = len(attempt.pieces) == 1
        priority = attempt.priority if first else Priority(Urgency.AHEAD, attempt.priority.since)
        task = attempt.track(asyncio.get_running_loop().create_task(self._synthesize(attempt, piece, priority, key)))
        await asyncio.wait({task})
        if not task.cancelled() and isinstance(error := task.exception(), EngineError):
            if error.code == CAP_REACHED:
                attempt.failed = True
                attempt.halt_work()  # the rest of the reply is not spoken
                self.push(Out(attempt, PipelineError(ErrorCode.CAP_REACHED, CAP_NOTICE, attempt.turn_id)))
                self._apologise(attempt, cap=True)
                self.push(ReplyDone(attempt, TurnStatus.CAP_REACHED))
                return
            log.error("turn %s failed in text-to-speech: %s", attempt.turn_id, task.exception())
            attempt.failed = True
            attempt.halt_work()  # the model's remaining text can no longer be spoken
            self.push(Out(attempt, PipelineError(ErrorCode.ENGINE_ERROR, "The tutor could not answer this turn.", attempt.turn_id)))
            self._apologise(attempt)
            self.push(ReplyDone(attempt, TurnStatus.FAILED))

    def _heard_audio(self, attempt: Attempt, piece: SpokenPiece, audio: SynthesizedAudio) -> None:
        if not attempt.answer_ready:
            attempt.answer_ready = True
            # A voice model starts each synthesis with a little silence (Piper's joe: 25-60 ms);
            # before the answer's first word it is only a longer wait.
            audio = replace(audio, pcm16=trim_leading_silence(audio.pcm16, audio.sample_rate))
            self.push(Mark(attempt, "tts_first_audio", self._clock()))
        piece.synthesized_ms += audio.duration_ms
        self.push(SpeechAudio(attempt, piece, audio))

    async def _synthesize(
        self, attempt: Attempt, piece: SpokenPiece, priority: Priority, key: Key | None = None
    ) -> None:
        control = attempt.call("tts")
        synthesized_ms = 0
        chunks: list[SynthesizedAudio] = []
        refused = False
        try:
            with work_scope(priority), call_scope(control):
                async for audio in self._tts.synthesize(piece.text, self.voice):
                    self._heard_audio(attempt, piece, audio)
                    synthesized_ms += audio.duration_ms
                    chunks.append(audio)
            # Kept only when whole and from the engine the key names (not a fallback's voice).
            if key is not None and self._stock is not None and control.served_by in (None, self._tts.info):
                self._stock.keep(key, tuple(chunks))
        except EngineError as exc:
            refused = exc.code == CAP_REACHED
            raise
        finally:
            if not refused:  # a refused call was never sent to the engine: nothing to meter
                engine = control.served_by or self._tts.info
                self.push(Usage(attempt.turn_id, attempt, UsageKind.TTS_CHARS, len(piece.text), engine))
                self.push(Usage(attempt.turn_id, attempt, UsageKind.TTS_AUDIO_MS, synthesized_ms, engine))

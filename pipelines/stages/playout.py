"""Playout: the one place that paces reply audio and knows what the student has heard.

Audio goes out at real time plus a small lead, so "sent" stays close to "heard" and a barge-in
silences the tutor within the lead; each sentence's caption goes out as its audio starts. The
client's playback is modelled here (when what was sent will have played, and where it ran dry),
which is what the turn's heard text is cut from. Other output passes straight through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import numpy as np

from pipelines.control import CachedAudio, GiveUp, Mark, Out, ReplyDone, SpeechAudio
from pipelines.frames import DataFrame, Interrupt, ReplyAudio, ReplyAudioStarted, ReplySentence, SystemFrame
from pipelines.processor import Stage
from pipelines.turn import Attempt, SpokenPiece, Turns

Playable = SpeechAudio | CachedAudio | ReplyDone
log = logging.getLogger(__name__)


class PlayoutStage(Stage):
    name = "playout"

    def __init__(self, turns: Turns, clock: Callable[[], float], *, lead_ms: int, chunk_ms: int) -> None:
        super().__init__()
        self._turns = turns
        self._clock = clock
        self._lead_s = lead_ms / 1000
        self._chunk_ms = chunk_ms
        self._audio: asyncio.Queue[Playable] = asyncio.Queue()
        self._announced: SpokenPiece | None = None
        self._pacer: asyncio.Task[None] | None = None

    def start(self, next_stage: Stage | None, broadcast: Callable[[SystemFrame], None]) -> None:
        super().start(next_stage, broadcast)
        self._pacer = asyncio.get_running_loop().create_task(self._pace())

    async def stop(self) -> None:
        if self._pacer is not None:
            self._pacer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pacer
        await super().stop()

    def on_system(self, frame: SystemFrame) -> None:
        if isinstance(frame, Interrupt):
            # What was heard is known here, so the interrupted attempt is ended here.
            self._turns.stop(self._turns.active, frame.reason)
        elif isinstance(frame, GiveUp):
            # The late answer's audio is dropped; its apology is on its way behind it.
            kept = [f for f in _drain(self._audio) if not (isinstance(f, SpeechAudio) and f.attempt is frame.attempt)]
            for f in kept:
                self._audio.put_nowait(f)

    async def process(self, frame: DataFrame) -> None:
        if isinstance(frame, SpeechAudio | CachedAudio | ReplyDone):
            self._audio.put_nowait(frame)
        elif not isinstance(frame, Out) or frame.attempt.live:
            self.push(frame)

    async def _pace(self) -> None:
        while True:
            frame = await self._audio.get()
            try:
                await self._play(frame)
            except Exception:  # noqa: BLE001 - one bad frame must not silence the session
                log.exception("playout failed on %s", type(frame).__name__)

    async def _play(self, frame: Playable) -> None:
        attempt = frame.attempt
        if not attempt.live:
            return
        if isinstance(frame, SpeechAudio):
            if attempt.gave_up or attempt.failed:
                return
            if self._announced is not frame.piece:
                self._announced = frame.piece
                self._announce(attempt, frame.piece.text, frame.audio.sample_rate)
            await self._send(attempt, frame.piece, frame.audio.pcm16, frame.audio.sample_rate)
        elif isinstance(frame, CachedAudio):
            if frame.filler and attempt.audio_started:
                return  # the answer came first
            speech = frame.speech
            self._announce(attempt, speech.text, speech.sample_rate)
            await self._send(attempt, None, speech.pcm16, speech.sample_rate, yield_to_answer=frame.filler)
        else:
            # Stay interruptible until the student has heard the end of the reply.
            await self._sleep(attempt, attempt.play_end - self._clock())
            if attempt.live:
                self._turns.complete(attempt, frame.status)

    def _announce(self, attempt: Attempt, text: str, sample_rate: int) -> None:
        if not attempt.audio_started:
            attempt.audio_started = True
            self.push(Out(attempt, ReplyAudioStarted(attempt.turn_id, sample_rate)))
        self.push(Out(attempt, ReplySentence(attempt.turn_id, text)))

    async def _send(
        self, attempt: Attempt, piece: SpokenPiece | None, pcm16: bytes, sample_rate: int, *, yield_to_answer: bool = False
    ) -> None:
        chunk_bytes = sample_rate * self._chunk_ms // 1000 * 2
        for start in range(0, len(pcm16), chunk_bytes):
            chunk = pcm16[start : start + chunk_bytes]
            if yield_to_answer and attempt.answer_ready and start and _is_quiet(chunk):
                return  # a filler stops between two words once the answer is ready to speak
            ahead = attempt.play_end - self._clock()
            if ahead > self._lead_s:
                await self._sleep(attempt, ahead - self._lead_s)
            if not attempt.live or (piece is not None and (attempt.gave_up or attempt.failed)):
                return
            now = self._clock()
            chunk_s = len(chunk) / 2 / sample_rate
            # A client buffer that ran dry restarts playback now; otherwise audio queues behind.
            if attempt.play_end and now - attempt.play_end > 0.02:
                attempt.gaps_ms += round((now - attempt.play_end) * 1000)
            attempt.play_end = max(attempt.play_end, now) + chunk_s
            self.push(Out(attempt, ReplyAudio(attempt.turn_id, chunk, sample_rate)))
            if piece is not None:
                if not any(p.sent_ms for p in attempt.pieces):
                    self.push(Mark(attempt, "answer_audio_sent", self._clock()))
                piece.sent_ms += round(chunk_s * 1000)

    async def _sleep(self, attempt: Attempt, seconds: float) -> None:
        """Sleep, but wake at once if the attempt is interrupted."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(attempt.halted.wait(), seconds)


def _drain(queue: asyncio.Queue[Playable]) -> list[Playable]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def _is_quiet(pcm16: bytes) -> bool:
    """A gap between words: no sample above ~-36 dBFS."""
    samples = np.frombuffer(pcm16, dtype="<i2")
    return bool(samples.size) and int(np.abs(samples.astype(np.int32)).max()) < 500

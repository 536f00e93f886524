"""One session's voice loop: VAD -> turn detection -> STT -> agent/LLM -> chunker -> TTS -> events.

The pipeline takes 16 kHz mono PCM16 and typed text input and emits `pipelines.frames` events to
an async sink. It knows nothing about sockets: transports adapt bytes to these calls at the edge.

Timing model: every input frame is stamped with its arrival time, so the end of the student's
speech is known in wall time and voice-to-voice runs from there to the first reply audio handed to
the sink. Reply audio is paced at real time with a small lead, which keeps "sent" close to "heard"
and lets a barge-in silence the tutor within that lead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from models.base import (
    EngineError,
    GenerationRequest,
    LanguageModel,
    SpeechToText,
    TextToSpeech,
    Transcription,
    VoiceActivityDetector,
)
from pipelines.agent import TutorAgent
from pipelines.audio import PIPELINE_SAMPLE_RATE, pcm16_to_float
from pipelines.chunker import SentenceChunker
from pipelines.frames import (
    BudgetMiss,
    Interrupted,
    InterruptReason,
    PipelineError,
    PipelineEvent,
    ReplyAudio,
    ReplyAudioDone,
    ReplyAudioStarted,
    ReplySentence,
    ReplyTextDelta,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
    TranscriptPartial,
    TurnDone,
    TurnStatus,
    TurnUsage,
)
from pipelines.turn_detection import TurnDetector, TurnDetectorConfig, TurnSignal

log = logging.getLogger(__name__)

EventSink = Callable[[PipelineEvent], Awaitable[None]]

# The order of the marks a turn passes through; each stage is the time since the previous mark.
STAGES = ("endpointing", "stt", "llm_first_token", "first_sentence", "tts_first_audio", "send")


@dataclass(frozen=True, slots=True)
class Engines:
    vad: VoiceActivityDetector
    stt: SpeechToText
    llm: LanguageModel
    tts: TextToSpeech


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    turn: TurnDetectorConfig = field(default_factory=TurnDetectorConfig)
    partial_interval_ms: int = 900  # 0 turns partial transcripts off
    tail_ms: int = 210  # silence kept after the last voiced frame; whisper likes a little
    max_utterance_ms: int = 45_000
    playback_lead_ms: int = 300
    audio_chunk_ms: int = 40
    budgets_ms: dict[str, int] = field(default_factory=dict)  # stage or "voice_to_voice" -> ms


@dataclass(slots=True)
class _SpokenPiece:
    text: str
    synthesized_ms: int = 0
    sent_ms: int = 0


@dataclass(slots=True)
class _Turn:
    id: str
    marks: dict[str, float] = field(default_factory=dict)
    usage: TurnUsage = field(default_factory=TurnUsage)
    user_text: str = ""
    generated: str = ""
    pieces: list[_SpokenPiece] = field(default_factory=list)
    audio_started: bool = False
    reply_started: bool = False
    interrupt_reason: InterruptReason | None = None
    request: GenerationRequest | None = None
    task: asyncio.Task[None] | None = None
    # Client playback model: when the audio sent so far will have finished playing.
    play_end: float = 0.0

    def heard_text(self, now: float) -> str:
        """Words the student was sent (audio still queued beyond the playback lead is excluded)."""
        unplayed_ms = max(0.0, (self.play_end - now) * 1000)
        words: list[str] = []
        remaining_unplayed = unplayed_ms
        # Walk backwards to take the not-yet-played audio off the end.
        sent = [p.sent_ms for p in self.pieces]
        for i in range(len(sent) - 1, -1, -1):
            take = min(sent[i], remaining_unplayed)
            sent[i] -= int(take)
            remaining_unplayed -= take
        for piece, sent_ms in zip(self.pieces, sent, strict=True):
            if sent_ms <= 0:
                break
            piece_words = piece.text.split()
            if piece.synthesized_ms and sent_ms < piece.synthesized_ms:
                fraction = sent_ms / piece.synthesized_ms
                words.extend(piece_words[: max(1, round(len(piece_words) * fraction))])
                break
            words.extend(piece_words)
        return " ".join(words)


class VoicePipeline:
    def __init__(
        self,
        engines: Engines,
        agent: TutorAgent,
        sink: EventSink,
        config: PipelineConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engines = engines
        self.agent = agent
        self.config = config or PipelineConfig()
        self.usage_total = TurnUsage()
        self._sink = sink
        self._clock = clock
        self._detector = TurnDetector(self.config.turn)
        frame_ms = self.config.turn.frame_ms
        self._frame_bytes = PIPELINE_SAMPLE_RATE * frame_ms // 1000 * 2
        self._pending = bytearray()
        preroll = (self.config.turn.preroll_ms // frame_ms) + self.config.turn.start_window_frames
        self._preroll: deque[bytes] = deque(maxlen=preroll)
        self._frame_times: deque[tuple[int, float]] = deque(maxlen=512)
        self._utterance = bytearray()
        self._utterance_first_frame = 0
        self._turn_ids = itertools.count(1)
        self._listening: _Turn | None = None  # turn whose speech is being heard
        self._active: _Turn | None = None  # turn whose reply is in flight
        self._speculation: asyncio.Task[Transcription] | None = None
        self._partial: asyncio.Task[None] | None = None
        self._last_partial_frame = 0
        self._silenced: set[str] = set()
        self._outbox: asyncio.Queue[PipelineEvent | None] = asyncio.Queue()
        self._emitter = asyncio.get_running_loop().create_task(self._emit_loop())
        self._closed = False

    # ----------------------------------------------------------------------------------- input

    def push_audio(self, pcm16: bytes) -> None:
        """Feed 16 kHz mono PCM16. Cheap and synchronous: VAD is microseconds per frame."""
        if self._closed:
            return
        self._pending += pcm16
        size = self._frame_bytes
        while len(self._pending) >= size:
            frame = bytes(self._pending[:size])
            del self._pending[:size]
            self._process_frame(frame)

    async def submit_text(self, text: str) -> str:
        """Typed input: the accessibility fallback. Returns the new turn's id."""
        await self.interrupt("text_input")
        turn = _Turn(id=f"turn-{next(self._turn_ids)}")
        now = self._clock()
        turn.marks.update(speech_end=now, end_of_turn=now)
        self._start_reply(turn, text=text)
        return turn.id

    async def cancel_reply(self) -> bool:
        return await self.interrupt("cancel")

    async def interrupt(self, reason: InterruptReason) -> bool:
        task = self._stop_reply(reason)
        if task is None:
            return False
        await asyncio.gather(task, return_exceptions=True)
        return True

    def _stop_reply(self, reason: InterruptReason) -> asyncio.Task[None] | None:
        """Silence the reply synchronously: no audio of it is handed to the sink after this."""
        turn = self._active
        if turn is None or turn.task is None or turn.task.done():
            return None
        turn.interrupt_reason = reason
        self._silenced.add(turn.id)
        if turn.request is not None:
            turn.request.cancel.set()
        turn.task.cancel()
        return turn.task

    async def aclose(self) -> None:
        if self._closed:
            return
        await self.interrupt("session_end")
        self._closed = True
        for task in (self._speculation, self._partial):
            if task is not None:
                task.cancel()
        self._outbox.put_nowait(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._emitter, timeout=5)

    @property
    def reply_active(self) -> bool:
        return self._active is not None and self._active.task is not None and not self._active.task.done()

    # ------------------------------------------------------------------------------ VAD + turns

    def _process_frame(self, frame: bytes) -> None:
        now = self._clock()
        detector = self._detector
        signal = detector.process(self.engines.vad.is_speech(frame))
        self._frame_times.append((detector.frames_seen, now))
        if detector.in_speech or signal is TurnSignal.END_OF_TURN:
            if signal is TurnSignal.SPEECH_START:
                self._begin_utterance(frame)
            else:
                self._utterance += frame
        else:
            self._preroll.append(frame)

        if signal is TurnSignal.SPEECH_START:
            self._on_speech_start()
        elif signal is TurnSignal.PAUSE:
            self._speculate()
        elif signal is TurnSignal.RESUME:
            self._drop_speculation()
        elif signal is TurnSignal.END_OF_TURN:
            self._on_end_of_turn()
        elif detector.in_speech:
            if len(self._utterance) >= self.config.max_utterance_ms * PIPELINE_SAMPLE_RATE // 500:
                # Nobody speaks 45 s without a breath; treat it as a turn rather than buffer forever.
                detector.force_end()
                self._on_end_of_turn()
            else:
                self._maybe_partial()

    def _begin_utterance(self, frame: bytes) -> None:
        self._utterance = bytearray(b"".join(self._preroll)) + frame
        self._utterance_first_frame = self._detector.frames_seen - len(self._preroll)
        self._preroll.clear()
        self._last_partial_frame = self._detector.frames_seen

    def _on_speech_start(self) -> None:
        self._stop_reply("barge_in")
        turn = _Turn(id=f"turn-{next(self._turn_ids)}")
        self._listening = turn
        stream_ms = self._detector.speech_start_frame * self.config.turn.frame_ms
        self._emit(SpeechStarted(turn.id, stream_ms))

    def _utterance_audio(self) -> np.ndarray:
        frame_ms = self.config.turn.frame_ms
        end_frame = self._detector.last_voiced_end + self.config.tail_ms // frame_ms
        n_frames = max(0, end_frame - self._utterance_first_frame)
        return pcm16_to_float(bytes(self._utterance[: n_frames * self._frame_bytes]))

    def _speculate(self) -> None:
        """The student paused: transcribe now, inside the silence, so the final is ready early."""
        self._drop_speculation()
        if self._listening is None:
            return
        audio = self._utterance_audio()
        self._speculation = asyncio.get_running_loop().create_task(self.engines.stt.transcribe(audio))

    def _drop_speculation(self) -> None:
        task, self._speculation = self._speculation, None
        if task is None:
            return
        turn = self._listening

        def account(done: asyncio.Task[Transcription]) -> None:
            # Discarded work still cost something; meter it as partial STT audio, never lose it.
            if not done.cancelled() and done.exception() is None and turn is not None:
                turn.usage.stt_partial_audio_ms += done.result().audio_ms

        task.add_done_callback(account)

    def _maybe_partial(self) -> None:
        interval = self.config.partial_interval_ms
        turn = self._listening
        if not interval or turn is None or (self._partial and not self._partial.done()):
            return
        frames_since = self._detector.frames_seen - self._last_partial_frame
        if frames_since * self.config.turn.frame_ms < interval:
            return
        self._last_partial_frame = self._detector.frames_seen
        audio = pcm16_to_float(bytes(self._utterance))
        self._partial = asyncio.get_running_loop().create_task(self._run_partial(turn, audio))

    async def _run_partial(self, turn: _Turn, audio: np.ndarray) -> None:
        try:
            result = await self.engines.stt.transcribe(audio, partial=True)
        except EngineError as exc:
            log.warning("partial transcription failed: %s", exc)
            return
        turn.usage.stt_partial_audio_ms += result.audio_ms
        if self._listening is turn and result.text:
            self._emit(TranscriptPartial(turn.id, result.text))

    def _on_end_of_turn(self) -> None:
        turn, self._listening = self._listening, None
        if turn is None:
            return
        now = self._clock()
        turn.marks["speech_end"] = self._arrival_of(self._detector.last_voiced_end)
        turn.marks["end_of_turn"] = now
        stream_ms = self._detector.last_voiced_end * self.config.turn.frame_ms
        self._emit(SpeechStopped(turn.id, stream_ms))
        speculation, self._speculation = self._speculation, None
        stt = speculation or asyncio.get_running_loop().create_task(
            self.engines.stt.transcribe(self._utterance_audio())
        )
        self._utterance = bytearray()
        self._start_reply(turn, stt=stt)

    def _arrival_of(self, frame_index: int) -> float:
        for index, arrived in reversed(self._frame_times):
            if index <= frame_index:
                return arrived
        return self._frame_times[0][1] if self._frame_times else self._clock()

    # ---------------------------------------------------------------------------------- replies

    def _start_reply(
        self, turn: _Turn, *, text: str | None = None, stt: asyncio.Task[Transcription] | None = None
    ) -> None:
        self._active = turn
        turn.task = asyncio.get_running_loop().create_task(self._run_turn(turn, text, stt))

    async def _run_turn(self, turn: _Turn, text: str | None, stt: asyncio.Task[Transcription] | None) -> None:
        status: TurnStatus = "completed"
        try:
            if stt is not None:
                result = await stt
                turn.usage.stt_audio_ms += result.audio_ms
                turn.usage.providers["stt"] = _label(self.engines.stt.info)
                text = result.text
                source = "speech"
            else:
                source = "text"
            turn.marks["transcript"] = self._clock()
            turn.user_text = (text or "").strip()
            self._emit(TranscriptFinal(turn.id, turn.user_text, source))
            if not turn.user_text:
                status = "no_speech"
                return
            await self._reply(turn)
        except asyncio.CancelledError:
            status = "cancelled" if turn.interrupt_reason == "cancel" else "interrupted"
            if stt is not None and not stt.done():
                stt.cancel()
            if turn.reply_started:
                reason = turn.interrupt_reason or "cancel"
                self._emit(Interrupted(turn.id, reason, turn.heard_text(self._clock())))
        except EngineError as exc:
            status = "failed"
            log.error("turn %s failed in an engine: %s", turn.id, exc)
            self._emit(PipelineError("engine_error", "The tutor could not answer this turn.", turn.id))
        finally:
            self._finish_turn(turn, status)

    async def _reply(self, turn: _Turn) -> None:
        turn.reply_started = True
        persona = self.agent.persona
        request = GenerationRequest(
            messages=self.agent.messages_for(turn.user_text), max_tokens=persona.max_reply_tokens
        )
        turn.request = request
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        thinker = asyncio.get_running_loop().create_task(self._think(turn, request, pieces))
        try:
            await self._speak(turn, pieces)
            await thinker
            await self._until_played(turn)
        finally:
            if not thinker.done():
                request.cancel.set()
                thinker.cancel()
                await asyncio.gather(thinker, return_exceptions=True)

    async def _think(
        self, turn: _Turn, request: GenerationRequest, pieces: asyncio.Queue[str | None]
    ) -> None:
        chunker = SentenceChunker()
        try:
            async for delta in self.engines.llm.stream(request):
                turn.marks.setdefault("llm_first_token", self._clock())
                turn.generated += delta
                self._emit(ReplyTextDelta(turn.id, delta))
                for piece in chunker.push(delta):
                    turn.marks.setdefault("first_sentence", self._clock())
                    pieces.put_nowait(piece)
            for piece in chunker.flush():
                turn.marks.setdefault("first_sentence", self._clock())
                pieces.put_nowait(piece)
        finally:
            turn.usage.llm_prompt_tokens = request.usage.prompt_tokens
            turn.usage.llm_completion_tokens = request.usage.completion_tokens
            turn.usage.providers["llm"] = _label(self.engines.llm.info)
            pieces.put_nowait(None)

    async def _speak(self, turn: _Turn, pieces: asyncio.Queue[str | None]) -> None:
        tts = self.engines.tts
        turn.usage.providers["tts"] = _label(tts.info)
        while (text := await pieces.get()) is not None:
            piece = _SpokenPiece(text)
            turn.pieces.append(piece)
            turn.usage.tts_chars += len(text)
            announced = False
            async for audio in tts.synthesize(text, self.agent.persona.voice):
                turn.marks.setdefault("tts_first_audio", self._clock())
                ms = audio.duration_ms
                piece.synthesized_ms += ms
                turn.usage.tts_audio_ms += ms
                if not turn.audio_started:
                    turn.audio_started = True
                    self._emit(ReplyAudioStarted(turn.id, audio.sample_rate))
                if not announced:
                    announced = True
                    self._emit(ReplySentence(turn.id, text))
                await self._send_paced(turn, piece, audio.pcm16, audio.sample_rate)

    async def _send_paced(self, turn: _Turn, piece: _SpokenPiece, pcm16: bytes, sample_rate: int) -> None:
        chunk_bytes = sample_rate * self.config.audio_chunk_ms // 1000 * 2
        lead = self.config.playback_lead_ms / 1000
        for start in range(0, len(pcm16), chunk_bytes):
            now = self._clock()
            ahead = turn.play_end - now
            if ahead > lead:
                await asyncio.sleep(ahead - lead)
                now = self._clock()
            chunk = pcm16[start : start + chunk_bytes]
            chunk_s = len(chunk) / 2 / sample_rate
            # A client buffer that ran dry restarts playback now; otherwise audio queues behind.
            turn.play_end = max(turn.play_end, now) + chunk_s
            piece.sent_ms += round(chunk_s * 1000)
            self._emit(ReplyAudio(turn.id, chunk, sample_rate))

    async def _until_played(self, turn: _Turn) -> None:
        """Stay interruptible until the student has heard the end of the reply."""
        remaining = turn.play_end - self._clock()
        if remaining > 0:
            await asyncio.sleep(remaining)

    def _finish_turn(self, turn: _Turn, status: TurnStatus) -> None:
        if self._active is turn:
            self._active = None
        now = self._clock()
        # A completed reply is remembered verbatim: the next prompt then extends the one llama.cpp
        # has cached token for token, so only the new question needs evaluating.
        heard = turn.heard_text(now) if status != "completed" else turn.generated.strip()
        if turn.audio_started:
            sent_ms = sum(p.sent_ms for p in turn.pieces)
            self._emit(ReplyAudioDone(turn.id, sent_ms))
        if turn.user_text:
            self.agent.remember(turn.user_text, heard)
        latency = self._latency(turn)
        misses = tuple(
            BudgetMiss(stage.removesuffix("_ms"), budget, latency[stage])
            for stage, budget in self.config.budgets_ms.items()
            if stage in latency and latency[stage] > budget
        )
        self.usage_total.add(turn.usage)
        self._emit(TurnDone(turn.id, status, turn.user_text, heard, latency, turn.usage, misses))

    def _latency(self, turn: _Turn) -> dict[str, int]:
        marks = turn.marks
        order = (
            "speech_end",
            "end_of_turn",
            "transcript",
            "llm_first_token",
            "first_sentence",
            "tts_first_audio",
            "first_audio_sent",
        )
        latency: dict[str, int] = {}
        for stage, (start, end) in zip(STAGES, itertools.pairwise(order), strict=True):
            if start in marks and end in marks:
                latency[f"{stage}_ms"] = max(0, round((marks[end] - marks[start]) * 1000))
        if "first_audio_sent" in marks and "speech_end" in marks:
            latency["voice_to_voice_ms"] = round((marks["first_audio_sent"] - marks["speech_end"]) * 1000)
        return latency

    # ----------------------------------------------------------------------------------- output

    def _emit(self, event: PipelineEvent) -> None:
        if not self._closed:
            self._outbox.put_nowait(event)

    async def _emit_loop(self) -> None:
        while (event := await self._outbox.get()) is not None:
            if isinstance(event, ReplyAudio) and event.turn_id in self._silenced:
                continue  # queued before the interruption; the student must not hear it
            try:
                await self._sink(event)
            except Exception:  # noqa: BLE001 - a dead transport ends the session, not the server
                log.info("event sink failed; closing pipeline", exc_info=True)
                self._closed = True
                if self._active and self._active.task:
                    self._active.task.cancel()
                return
            if isinstance(event, ReplyAudio):
                turn = self._active
                if turn is not None and turn.id == event.turn_id:
                    turn.marks.setdefault("first_audio_sent", self._clock())


def _label(info: object) -> str:
    return f"{getattr(info, 'provider', '?')}/{getattr(info, 'model', '?')}"

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
from dataclasses import dataclass, field, replace

import numpy as np

from models.base import (
    EngineError,
    GenerationRequest,
    LanguageModel,
    SpeechToText,
    SynthesizedAudio,
    TextToSpeech,
    Transcription,
    VoiceActivityDetector,
)
from models.scheduling import Priority, Urgency, work_scope
from pipelines.agent import TutorAgent
from pipelines.audio import PIPELINE_SAMPLE_RATE, pcm16_to_float
from pipelines.budgets import STAGE_MARKS, BudgetAction, BudgetPolicy
from pipelines.chunker import SentenceChunker
from pipelines.fillers import CachedSpeech, FillerCache
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
PARTIAL_WINDOW_S = 19


@dataclass(frozen=True, slots=True)
class Engines:
    vad: VoiceActivityDetector
    stt: SpeechToText
    llm: LanguageModel
    tts: TextToSpeech
    fillers: FillerCache | None = None


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    turn: TurnDetectorConfig = field(default_factory=TurnDetectorConfig)
    partial_interval_ms: int = 1200  # 0 turns partial transcripts off
    tail_ms: int = 210  # silence kept after the last voiced frame; whisper likes a little
    max_utterance_ms: int = 45_000
    playback_lead_ms: int = 300
    audio_chunk_ms: int = 40
    budgets: BudgetPolicy = field(default_factory=BudgetPolicy)
    # At the first pause, transcribe *and* start answering, held back until the silence confirms
    # the end of the turn; thrown away if the student goes on. Off: only transcribe early.
    speculative_reply: bool = True
    # Prefill the language model's cache with each partial transcript (see _run_partial).
    prefill: bool = True


@dataclass(slots=True)
class _SpokenPiece:
    text: str
    synthesized_ms: int = 0
    sent_ms: int = 0


@dataclass(slots=True)
class _Listening:
    """The turn whose speech is being heard."""

    id: str
    latest_partial: str = ""
    speculative_usage: TurnUsage = field(default_factory=TurnUsage)


@dataclass(slots=True)
class _Turn:
    """One attempt at answering a turn (a turn may see several speculative attempts)."""

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
    # Silence inside the reply: audio that was not ready when the student's buffer ran dry.
    gaps_ms: int = 0
    # Speculation: events are held back until the end of the turn is confirmed.
    committed: asyncio.Event = field(default_factory=asyncio.Event)
    held: list[PipelineEvent] = field(default_factory=list)
    discarded: bool = False
    listening: _Listening | None = None
    # Budgets.
    misses: list[BudgetMiss] = field(default_factory=list)
    transcript_override: asyncio.Future[str] | None = None
    shorten: bool = False
    gave_up: str | None = None
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    side_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    replay: str | None = None  # "repeat that": speak this instead of asking the model
    # How urgent this attempt's engine work is (models.scheduling): speculative until committed,
    # then urgent until its first audio; the rest of the reply runs behind other students' firsts.
    priority: Priority = field(default_factory=lambda: Priority(Urgency.SPECULATIVE))
    llm_priority: Priority | None = None

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
        self._vad = engines.vad.new_stream()  # never shared: a VAD remembers what it heard
        frame_ms = self.config.turn.frame_ms
        self._frame_bytes = PIPELINE_SAMPLE_RATE * frame_ms // 1000 * 2
        self._pending = bytearray()
        preroll = (self.config.turn.preroll_ms // frame_ms) + self.config.turn.start_window_frames
        self._preroll: deque[bytes] = deque(maxlen=preroll)
        self._frame_times: deque[tuple[int, float]] = deque(maxlen=512)
        self._utterance = bytearray()
        self._utterance_first_frame = 0
        # The last committed turn's audio, kept until its reply is heard: if the student goes on
        # talking before that, the end of turn was premature and the turn continues.
        self._carry: tuple[_Listening, bytes, int, int] | None = None
        self._turn_ids = itertools.count(1)
        self._listening: _Listening | None = None
        self._speculation: _Turn | None = None  # attempt started at the pause, not yet committed
        self._active: _Turn | None = None  # committed turn whose reply is in flight
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
        self._launch(turn, text=text)
        self._commit(turn)
        return turn.id

    async def cancel_reply(self) -> bool:
        return await self.interrupt("cancel")

    async def repeat_last(self) -> bool:
        """Say the last answer again, as it was heard, without asking the model again."""
        last = next((e.assistant for e in reversed(self.agent.history) if e.assistant), "")
        if not last:
            return False
        await self.interrupt("text_input")
        turn = _Turn(id=f"turn-{next(self._turn_ids)}", replay=last)
        now = self._clock()
        for mark in ("speech_end", "end_of_turn", "transcript", "llm_first_token", "first_sentence"):
            turn.marks[mark] = now
        self._launch(turn)
        self._commit(turn)
        return True

    def set_voice_rate(self, rate: float) -> None:
        persona = self.agent.persona
        self.agent.persona = replace(persona, voice=replace(persona.voice, rate=rate))

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
        self._cancel(turn)
        return turn.task

    def _cancel(self, turn: _Turn) -> None:
        if turn.request is not None:
            turn.request.cancel.set()
        for task in turn.side_tasks:
            task.cancel()
        if turn.task is not None:
            turn.task.cancel()

    async def aclose(self) -> None:
        if self._closed:
            return
        await self.interrupt("session_end")
        self._drop_speculation()
        self._closed = True
        if self._partial is not None:
            self._partial.cancel()
        self._outbox.put_nowait(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._emitter, timeout=5)

    # ------------------------------------------------------------------------------ VAD + turns

    def _process_frame(self, frame: bytes) -> None:
        now = self._clock()
        detector = self._detector
        signal = detector.process(self._vad.is_speech(frame))
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

    def _continues_last_turn(self) -> _Listening | None:
        """Speech that starts before the last turn's reply was heard continues that turn: the
        student only paused (a learner thinking aloud). Its audio is joined to the new speech, so
        the transcript holds the whole sentence and no half-question is answered."""
        carry, self._carry = self._carry, None
        active = self._active
        if carry is None or active is None or active.audio_started or active.id != carry[0].id:
            return None
        listening, audio, first_frame, end_frame = carry
        gap_frames = self._utterance_first_frame - end_frame
        if not 0 <= gap_frames * self.config.turn.frame_ms <= 3000:
            return None
        self._active = None
        if active.reply_started:  # its text may have been shown, though none of it was heard
            self._emit(Interrupted(active.id, "student_continued", ""))
        active.discarded = True  # never finished as a turn; its usage is metered as speculative
        self._cancel(active)
        self._utterance = bytearray(audio) + bytes(gap_frames * self._frame_bytes) + self._utterance
        self._utterance_first_frame = first_frame
        return listening

    def _on_speech_start(self) -> None:
        listening = self._continues_last_turn()
        if listening is None:
            self._stop_reply("barge_in")
            listening = _Listening(id=f"turn-{next(self._turn_ids)}")
        self._listening = listening
        stream_ms = self._detector.speech_start_frame * self.config.turn.frame_ms
        self._emit(SpeechStarted(listening.id, stream_ms))

    def _utterance_audio(self) -> np.ndarray:
        frame_ms = self.config.turn.frame_ms
        end_frame = self._detector.last_voiced_end + self.config.tail_ms // frame_ms
        n_frames = max(0, end_frame - self._utterance_first_frame)
        return pcm16_to_float(bytes(self._utterance[: n_frames * self._frame_bytes]))

    def _speculate(self) -> None:
        """The student paused: transcribe and start answering now, inside the silence, held back
        until the end of the turn is confirmed."""
        self._drop_speculation()
        listening = self._listening
        if listening is None:
            return
        attempt = _Turn(id=listening.id, listening=listening)
        self._launch(attempt, stt=self._transcribe(self._utterance_audio(), attempt.priority))
        self._speculation = attempt

    def _drop_speculation(self) -> None:
        attempt, self._speculation = self._speculation, None
        if attempt is not None:
            attempt.discarded = True
            self._cancel(attempt)

    def _transcribe(self, audio: np.ndarray, priority: Priority) -> asyncio.Task[Transcription]:
        async def transcribe() -> Transcription:
            with work_scope(priority):
                return await self.engines.stt.transcribe(audio)

        return asyncio.get_running_loop().create_task(transcribe())

    def _maybe_partial(self) -> None:
        interval = self.config.partial_interval_ms
        listening = self._listening
        if not interval or listening is None or (self._partial and not self._partial.done()):
            return
        if self.engines.stt.busy:  # partials are a courtesy: under load the final comes first
            return
        frames_since = self._detector.frames_seen - self._last_partial_frame
        if frames_since * self.config.turn.frame_ms < interval:
            return
        self._last_partial_frame = self._detector.frames_seen
        # The most recent words only: a partial is a live caption, and its cost must stay bounded
        # (whisper's 20 s window) however long the student talks.
        recent = self._utterance[-PARTIAL_WINDOW_S * PIPELINE_SAMPLE_RATE * 2 :]
        audio = pcm16_to_float(bytes(recent))
        whole = len(recent) == len(self._utterance)
        self._partial = asyncio.get_running_loop().create_task(self._run_partial(listening, audio, whole))

    async def _run_partial(self, listening: _Listening, audio: np.ndarray, whole: bool) -> None:
        try:
            with work_scope(Priority(Urgency.OPTIONAL)):
                result = await self.engines.stt.transcribe(audio, partial=True)
                listening.speculative_usage.stt_partial_audio_ms += result.audio_ms
                if not result.text:
                    return
                listening.latest_partial = result.text
                if self._listening is not listening:
                    return
                self._emit(TranscriptPartial(listening.id, result.text))
                if whole and self.config.prefill and not self.engines.llm.busy:
                    # Read the question heard so far into the model's cache while the student
                    # is still talking: at the pause only the words that changed are left to read.
                    # Only on an idle model: a prefill step cannot be interrupted, and under load
                    # it would hold the core other students' replies need.
                    tokens = await self.engines.llm.prefill(self.agent.messages_for(result.text))
                    listening.speculative_usage.llm_prompt_tokens += tokens
        except EngineError as exc:
            log.warning("partial transcription or prefill failed: %s", exc)

    def _on_end_of_turn(self) -> None:
        listening, self._listening = self._listening, None
        if listening is None:
            return
        stream_ms = self._detector.last_voiced_end * self.config.turn.frame_ms
        self._emit(SpeechStopped(listening.id, stream_ms))
        attempt, self._speculation = self._speculation, None
        if attempt is None:
            attempt = _Turn(id=listening.id, listening=listening)
            self._launch(attempt, stt=self._transcribe(self._utterance_audio(), attempt.priority))
        attempt.marks["speech_end"] = self._arrival_of(self._detector.last_voiced_end)
        attempt.marks["end_of_turn"] = self._clock()
        self._carry = (listening, bytes(self._utterance), self._utterance_first_frame,
                       self._detector.frames_seen)
        self._utterance = bytearray()
        self._commit(attempt)

    def _arrival_of(self, frame_index: int) -> float:
        for index, arrived in reversed(self._frame_times):
            if index <= frame_index:
                return arrived
        return self._frame_times[0][1] if self._frame_times else self._clock()

    # ---------------------------------------------------------------------------------- replies

    def _launch(
        self, turn: _Turn, *, text: str | None = None, stt: asyncio.Task[Transcription] | None = None
    ) -> None:
        turn.task = asyncio.get_running_loop().create_task(self._run_turn(turn, text, stt))

    def _commit(self, turn: _Turn) -> None:
        """The turn is real: release what it held back and start watching its budgets."""
        self._active = turn
        for event in turn.held:
            self._emit(event)
        turn.held.clear()
        turn.committed.set()
        for priority in (turn.priority, turn.llm_priority):
            if priority is not None and priority.urgency is Urgency.SPECULATIVE:
                priority.urgency = Urgency.NOW
        turn.side_tasks.append(asyncio.get_running_loop().create_task(self._watch_budgets(turn)))

    def _emit_turn(self, turn: _Turn, event: PipelineEvent) -> None:
        if turn.discarded:
            return
        if turn.committed.is_set():
            self._emit(event)
        else:
            turn.held.append(event)

    async def _run_turn(
        self, turn: _Turn, text: str | None, stt: asyncio.Task[Transcription] | None
    ) -> None:
        status: TurnStatus = "completed"
        try:
            if turn.replay is not None:
                await self._reply(turn)
                return
            if stt is not None:
                turn.transcript_override = asyncio.get_running_loop().create_future()
                await asyncio.wait({stt, turn.transcript_override}, return_when=asyncio.FIRST_COMPLETED)
                turn.usage.providers["stt"] = _label(self.engines.stt.info)
                if stt.done():
                    result = stt.result()
                    turn.usage.stt_audio_ms += result.audio_ms
                    text = result.text
                else:  # the STT budget ran out: answer the latest partial transcript
                    text = turn.transcript_override.result()
                    stt.add_done_callback(self._meter_late_transcription)
                source = "speech"
            else:
                source = "text"
            turn.marks["transcript"] = self._clock()
            turn.user_text = (text or "").strip()
            self._emit_turn(turn, TranscriptFinal(turn.id, turn.user_text, source))
            if not turn.user_text:
                status = "no_speech"
                return
            if not self.config.speculative_reply:
                await turn.committed.wait()
            await self._reply(turn)
        except asyncio.CancelledError:
            if stt is not None and not stt.done():
                # The transcription still runs to the end on its worker: meter it when it lands.
                stt.add_done_callback(self._meter_late_transcription)
            if turn.gave_up:
                status = "failed"
                await self._give_up(turn)
            else:
                status = "cancelled" if turn.interrupt_reason == "cancel" else "interrupted"
                if turn.reply_started and turn.committed.is_set():
                    reason = turn.interrupt_reason or "cancel"
                    self._emit_turn(turn, Interrupted(turn.id, reason, turn.heard_text(self._clock())))
        except EngineError as exc:
            status = "failed"
            log.error("turn %s failed in an engine: %s", turn.id, exc)
            failure = PipelineError("engine_error", "The tutor could not answer this turn.", turn.id)
            self._emit_turn(turn, failure)
            await turn.committed.wait()
            await self._play_cached(turn, self._apology())
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
        if turn.replay is not None:
            chunker = SentenceChunker()
            for piece in [*chunker.push(turn.replay + " "), *chunker.flush(), None]:
                pieces.put_nowait(piece)
            turn.generated = turn.replay
            await self._speak(turn, pieces)
            await self._until_played(turn)
            return
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
        emitted = 0
        limit: int | None = None
        turn.llm_priority = priority = Priority(turn.priority.urgency, turn.priority.since)

        def queue(piece: str) -> None:
            turn.marks.setdefault("first_sentence", self._clock())
            pieces.put_nowait(piece)
            # The first piece is what the student waits for; the rest can queue behind other
            # students' first pieces (it is needed only once this one has been spoken).
            priority.urgency = max(priority.urgency, Urgency.AHEAD)

        try:
            with work_scope(priority):
                async for delta in self.engines.llm.stream(request):
                    turn.marks.setdefault("llm_first_token", self._clock())
                    turn.generated += delta
                    self._emit_turn(turn, ReplyTextDelta(turn.id, delta))
                    ready = chunker.push(delta)
                    if turn.shorten and limit is None:
                        # Budget action "shorten": speak what there is now and end after one more.
                        ready += [] if ready else chunker.flush()
                        limit = emitted + len(ready) + 1
                    for piece in ready:
                        queue(piece)
                        emitted += 1
                    if limit is not None and emitted >= limit:
                        request.cancel.set()
                        break
                else:
                    for piece in chunker.flush():
                        queue(piece)
        finally:
            turn.usage.llm_prompt_tokens = request.usage.prompt_tokens
            turn.usage.llm_completion_tokens = request.usage.completion_tokens
            turn.usage.providers["llm"] = _label(self.engines.llm.info)
            pieces.put_nowait(None)

    async def _speak(self, turn: _Turn, pieces: asyncio.Queue[str | None]) -> None:
        """Synthesise pieces as they come and send their audio paced. Synthesis runs ahead of
        playback, so a later piece is ready before the one before it has finished playing."""
        turn.usage.providers["tts"] = _label(self.engines.tts.info)
        ready: asyncio.Queue[tuple[_SpokenPiece, SynthesizedAudio] | None] = asyncio.Queue()
        synthesis = asyncio.get_running_loop().create_task(self._synthesize(turn, pieces, ready))
        announced: _SpokenPiece | None = None
        try:
            while (item := await ready.get()) is not None:
                piece, audio = item
                async with turn.send_lock:
                    if announced is not piece:
                        announced = piece
                        self._announce(turn, piece.text, audio.sample_rate)
                    await self._send_paced(turn, piece, audio.pcm16, audio.sample_rate)
            await synthesis  # raises what synthesis raised
        finally:
            if not synthesis.done():
                synthesis.cancel()
                await asyncio.gather(synthesis, return_exceptions=True)

    async def _synthesize(
        self,
        turn: _Turn,
        pieces: asyncio.Queue[str | None],
        ready: asyncio.Queue[tuple[_SpokenPiece, SynthesizedAudio] | None],
    ) -> None:
        try:
            while (text := await pieces.get()) is not None:
                piece = _SpokenPiece(text)
                turn.pieces.append(piece)
                turn.usage.tts_chars += len(text)
                # The first piece is as urgent as the turn; later ones have audio playing before
                # them, so other students' first pieces may go first.
                first = len(turn.pieces) == 1
                priority = turn.priority if first else Priority(Urgency.AHEAD, turn.priority.since)
                with work_scope(priority):
                    async for audio in self.engines.tts.synthesize(text, self.agent.persona.voice):
                        turn.marks.setdefault("tts_first_audio", self._clock())
                        piece.synthesized_ms += audio.duration_ms
                        turn.usage.tts_audio_ms += audio.duration_ms
                        ready.put_nowait((piece, audio))
        finally:
            ready.put_nowait(None)

    def _announce(self, turn: _Turn, text: str, sample_rate: int) -> None:
        if not turn.audio_started:
            turn.audio_started = True
            self._emit_turn(turn, ReplyAudioStarted(turn.id, sample_rate))
        self._emit_turn(turn, ReplySentence(turn.id, text))

    async def _send_paced(
        self,
        turn: _Turn,
        piece: _SpokenPiece | None,
        pcm16: bytes,
        sample_rate: int,
        *,
        yield_to_answer: bool = False,
    ) -> None:
        await turn.committed.wait()  # a speculative reply is ready, but waits for the turn's end
        chunk_bytes = sample_rate * self.config.audio_chunk_ms // 1000 * 2
        lead = self.config.playback_lead_ms / 1000
        for start in range(0, len(pcm16), chunk_bytes):
            answer_ready = "tts_first_audio" in turn.marks
            if yield_to_answer and answer_ready and start and _is_quiet(pcm16[start : start + chunk_bytes]):
                return  # a filler stops between two words once the answer is ready to speak
            now = self._clock()
            ahead = turn.play_end - now
            if ahead > lead:
                await asyncio.sleep(ahead - lead)
                now = self._clock()
            chunk = pcm16[start : start + chunk_bytes]
            chunk_s = len(chunk) / 2 / sample_rate
            # A client buffer that ran dry restarts playback now; otherwise audio queues behind.
            if turn.play_end and now - turn.play_end > 0.02:
                turn.gaps_ms += round((now - turn.play_end) * 1000)
            turn.play_end = max(turn.play_end, now) + chunk_s
            self._emit(ReplyAudio(turn.id, chunk, sample_rate))
            if piece is not None:
                piece.sent_ms += round(chunk_s * 1000)
                # The answer itself, as opposed to a filler that covered for it.
                turn.marks.setdefault("answer_audio_sent", self._clock())

    async def _play_cached(self, turn: _Turn, speech: CachedSpeech | None, *, filler: bool = False) -> None:
        """Speak a pre-synthesised phrase (filler or apology); not part of the tutor's answer.
        A filler gives way to the answer at its next pause between words."""
        if speech is None:
            return
        async with turn.send_lock:
            self._announce(turn, speech.text, speech.sample_rate)
            await self._send_paced(
                turn, None, speech.pcm16, speech.sample_rate, yield_to_answer=filler
            )
        await self._until_played(turn)

    async def _until_played(self, turn: _Turn) -> None:
        """Stay interruptible until the student has heard the end of the reply."""
        remaining = turn.play_end - self._clock()
        if remaining > 0:
            await asyncio.sleep(remaining)

    # ---------------------------------------------------------------------------------- budgets

    async def _watch_budgets(self, turn: _Turn) -> None:
        """Act on deadlines while the turn runs, until its first real audio is out."""
        policy = self.config.budgets
        while turn.task is not None and not turn.task.done():
            marks = turn.marks
            if "tts_first_audio" in marks and "first_audio_sent" in marks:
                return
            now = self._clock()
            for stage, (start, end) in STAGE_MARKS.items():
                if stage == "endpointing" or start not in marks or end in marks:
                    continue
                elapsed_ms = round((now - marks[start]) * 1000)
                budget = policy.stages.get(stage)
                if budget and elapsed_ms > budget.ms and not any(m.stage == stage for m in turn.misses):
                    miss = BudgetMiss(turn.id, stage, budget.ms, elapsed_ms, budget.action.value)
                    turn.misses.append(miss)
                    self._emit(miss)
                    self._act(turn, stage, budget.action)
                if stage != "voice_to_voice" and elapsed_ms > policy.stall_ms:
                    log.warning("turn %s stalled in %s after %d ms; giving up", turn.id, stage, elapsed_ms)
                    turn.gave_up = stage
                    turn.interrupt_reason = None
                    if turn.request is not None:
                        turn.request.cancel.set()
                    turn.task.cancel()
                    return
            await asyncio.sleep(0.02)

    def _act(self, turn: _Turn, stage: str, action: BudgetAction) -> None:
        if action is BudgetAction.FILLER and not turn.audio_started:
            phrase = self.engines.fillers.filler(self.agent.persona.voice) if self.engines.fillers else None
            task = asyncio.get_running_loop().create_task(self._play_cached(turn, phrase, filler=True))
            turn.side_tasks.append(task)
        elif action is BudgetAction.PARTIAL_TRANSCRIPT:
            partial = turn.listening.latest_partial if turn.listening else ""
            override = turn.transcript_override
            if partial and override is not None and not override.done():
                override.set_result(partial)
        elif action is BudgetAction.SHORTEN:
            turn.shorten = True

    def _apology(self) -> CachedSpeech | None:
        return self.engines.fillers.apology(self.agent.persona.voice) if self.engines.fillers else None

    async def _give_up(self, turn: _Turn) -> None:
        self._emit(PipelineError("engine_timeout", f"The tutor took too long ({turn.gave_up}).", turn.id))
        for task in turn.side_tasks:
            task.cancel()
        turn.send_lock = asyncio.Lock()  # a cancelled sender may have died holding the old one
        await self._play_cached(turn, self._apology())

    # ------------------------------------------------------------------------------ bookkeeping

    def _finish_turn(self, turn: _Turn, status: TurnStatus) -> None:
        for task in turn.side_tasks:
            task.cancel()
        if turn.discarded:
            # Never shown as a turn, never remembered, but what it consumed is metered.
            if turn.listening is not None:
                turn.listening.speculative_usage.add(turn.usage)
            return
        if self._active is turn:
            self._active = None
        now = self._clock()
        # A completed reply is remembered verbatim: the next prompt then extends the one llama.cpp
        # has cached token for token, so only the new question needs evaluating.
        if status != "completed":
            heard = turn.heard_text(now)
        elif turn.shorten:  # generation was cut: what was spoken, not what was left in the buffer
            heard = " ".join(p.text for p in turn.pieces)
        else:
            heard = turn.generated.strip()
        if turn.audio_started:
            sent_ms = sum(p.sent_ms for p in turn.pieces)
            self._emit(ReplyAudioDone(turn.id, sent_ms))
        if turn.user_text:
            self.agent.remember(turn.user_text, heard)
        latency = self._latency(turn)
        misses = list(turn.misses)
        for stage, budget in self.config.budgets.stages.items():
            actual = latency.get(f"{stage}_ms")
            if actual is not None and actual > budget.ms and not any(m.stage == stage for m in misses):
                misses.append(BudgetMiss(turn.id, stage, budget.ms, actual, BudgetAction.NONE.value))
        if turn.listening is not None:
            spent = turn.listening.speculative_usage
            turn.usage.stt_partial_audio_ms += spent.stt_partial_audio_ms
            spent.stt_partial_audio_ms = 0
            if spent != TurnUsage():
                turn.usage.speculative = spent
        self.usage_total.add(turn.usage)
        self._emit(TurnDone(turn.id, status, turn.user_text, heard, latency, turn.usage, tuple(misses)))

    def _meter_late_transcription(self, done: asyncio.Task[Transcription]) -> None:
        """A transcription nobody waited for (its turn moved on) still cost audio seconds; its
        turn may already be reported, so it lands in the session's speculative total."""
        if not done.cancelled() and done.exception() is None:
            self.usage_total.add(TurnUsage(speculative=TurnUsage(stt_audio_ms=done.result().audio_ms)))

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
        if turn.audio_started:
            latency["reply_gaps_ms"] = turn.gaps_ms
        if "speech_end" in marks:
            for mark, key in (("first_audio_sent", "voice_to_voice_ms"), ("answer_audio_sent", "voice_to_answer_ms")):
                if mark in marks:
                    latency[key] = round((marks[mark] - marks["speech_end"]) * 1000)
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


def _is_quiet(pcm16: bytes) -> bool:
    """A gap between words: no sample above ~-36 dBFS."""
    samples = np.frombuffer(pcm16, dtype="<i2")
    return bool(samples.size) and int(np.abs(samples.astype(np.int32)).max()) < 500


def _label(info: object) -> str:
    return f"{getattr(info, 'provider', '?')}/{getattr(info, 'model', '?')}"

"""Endpointing: microphone audio in, speech start / pause / resume / end of turn out.

Cuts the stream into VAD frames, keeps the utterance (with a little audio from before the detected
start, so first syllables survive), and turns the detector's signals into frames: a pause lets
transcription speculate, the end of a turn commits it, speech during a reply barges in.

When a turn ends is the turn policy's decision (pipelines/turn_policy.py). At each pause this stage
gathers its evidence: the turn model's score of the audio so far (scored off the event loop), the
punctuation of the speculative transcript, whether the tutor's last heard reply was a question, and
whether the words are the right answer to it.
While the policy waits out a thinking pause the tutor stays silent and the client is told so.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

import numpy as np

from models.base import EngineError, TurnCompletion, VoiceActivityDetector
from models.scheduling import Priority, Urgency, work_scope
from pipelines.audio import PIPELINE_SAMPLE_RATE, pcm16_to_float
from pipelines.config import TurnConfig
from pipelines.control import AttemptEnded, EndOfTurn, HeardSoFar, PartialAudio, Paused, Resumed
from pipelines.frames import (
    AudioIn,
    DataFrame,
    Interrupt,
    InterruptReason,
    SpeechStarted,
    SpeechStopped,
    SystemFrame,
    TurnPrompt,
    TurnThinking,
)
from pipelines.processor import Stage
from pipelines.speech_level import SpeechLevel, frame_level_dbfs
from pipelines.turn import Carry, Turns
from pipelines.turn_detection import TurnDetector, TurnSignal
from pipelines.turn_policy import Evidence, TurnPolicy

log = logging.getLogger(__name__)


class AnswerJudge(Protocol):
    """The lesson: whether it waits on an answer it can judge, and whether words are that answer."""

    def expects_answer(self) -> bool: ...

    def hears_right_answer(self, text: str) -> bool: ...

PARTIAL_WINDOW_S = 19  # a partial is a live caption: its cost stays bounded however long the talk


class EndpointingStage(Stage):
    name = "endpointing"

    def __init__(
        self,
        vad: VoiceActivityDetector,
        config: TurnConfig,
        turns: Turns,
        clock: Callable[[], float],
        *,
        partial_ready: Callable[[], bool] = lambda: True,
        turn_model: TurnCompletion | None = None,
        lesson: AnswerJudge | None = None,
    ) -> None:
        super().__init__()
        # Asked before cutting audio for a partial: partials are a courtesy, so none is started
        # while one runs or while the engine is busy (under load the final comes first).
        self._partial_ready = partial_ready
        self._vad = vad.new_stream()  # never shared: a VAD remembers what it heard
        self._config = config
        self._turns = turns
        self._clock = clock
        self._detector = TurnDetector(config)
        # The student's level outlives a turn: it also keeps amplified hiss from starting one.
        self._speech_level = SpeechLevel(config.quiet_gate_db) if config.quiet_gate_db else None
        self._frame_bytes = PIPELINE_SAMPLE_RATE * config.frame_ms // 1000 * 2
        self._pending = bytearray()
        self._preroll: deque[bytes] = deque(
            maxlen=config.preroll_ms // config.frame_ms + config.start_window_frames
        )
        self._frame_times: deque[tuple[int, float]] = deque(maxlen=512)
        self._utterance = bytearray()
        self._first_frame = 0
        self._last_partial_frame = 0
        self._policy = TurnPolicy(config)
        self._turn_model = turn_model
        self._lesson = lesson  # the lesson's judge: do these words answer its question?
        self._evidence: Evidence | None = None  # about the current pause; None while speaking
        self._pause = 0  # numbers pauses, so a late score never lands on a later pause
        self._scoring: asyncio.Task[None] | None = None
        self._score_due = False  # the current pause awaits the turn model's score, not yet asked
        self._thinking_sent = False
        self._prompted = False
        self._tutor_asked = False  # the last reply the student heard ended with a question

    def on_system(self, frame: SystemFrame) -> None:
        if isinstance(frame, HeardSoFar):
            if self._evidence is not None and frame.listening is self._turns.listening:
                self._evidence.transcript = frame.text
                self._evidence.sentence_end = frame.sentence_end
                self._evidence.awaiting_transcript = False
                if self._evidence.expects_answer and self._lesson is not None:
                    self._evidence.right_answer = self._lesson.hears_right_answer(frame.text)
        elif isinstance(frame, AttemptEnded) and frame.heard.strip():
            self._tutor_asked = frame.heard.rstrip().endswith("?")

    async def process(self, frame: DataFrame) -> None:
        if not isinstance(frame, AudioIn):
            self.push(frame)
            return
        self._pending += frame.pcm16
        size = self._frame_bytes
        while len(self._pending) >= size:
            chunk = bytes(self._pending[:size])
            del self._pending[:size]
            self._on_frame(chunk, frame.at)

    def _on_frame(self, chunk: bytes, at: float) -> None:
        detector = self._detector
        if self._evidence is not None:
            self._apply_policy()
        signal = detector.process(self._is_speech(chunk))
        self._frame_times.append((detector.frames_seen, at))
        if detector.in_speech or signal is TurnSignal.END_OF_TURN:
            if signal is TurnSignal.SPEECH_START:
                self._utterance = bytearray(b"".join(self._preroll)) + chunk
                self._first_frame = detector.frames_seen - len(self._preroll)
                self._preroll.clear()
                self._last_partial_frame = detector.frames_seen
            else:
                self._utterance += chunk
        else:
            self._preroll.append(chunk)

        listening = self._turns.listening
        if signal is TurnSignal.SPEECH_START:
            self._on_speech_start()
        elif signal is TurnSignal.PAUSE and listening is not None:
            audio = self._utterance_audio()
            self.push(Paused(listening, audio))
            self._start_pause()
        elif signal is TurnSignal.RESUME and listening is not None:
            self._end_pause()
            self.push(Resumed(listening))
        elif signal is TurnSignal.END_OF_TURN:
            self._on_end_of_turn()
        elif self._score_due and detector.silence_ms >= self._config.completion_silence_ms:
            self._start_scoring()
        elif detector.in_speech:
            if len(self._utterance) >= self._config.max_utterance_ms * PIPELINE_SAMPLE_RATE // 500:
                # Nobody speaks 45 s without a breath; treat it as a turn rather than buffer forever.
                detector.force_end()
                self._on_end_of_turn(continuable=False)
            else:
                self._maybe_partial()

    def _is_speech(self, chunk: bytes) -> bool:
        voiced = self._vad.is_speech(chunk)
        level = self._speech_level
        if level is None or not voiced:
            return voiced
        loudness = frame_level_dbfs(chunk)
        detector = self._detector
        if detector.in_speech and not detector.paused:
            # Mid-sentence the VAD alone decides: the soft end of a word is never cut off.
            level.heard_speech(loudness)
            return True
        config = self._config
        margin = config.quiet_gate_db
        if detector.in_speech:  # paused
            if detector.silence_ms < config.quiet_gate_after_ms:
                return True
            if detector.silence_ms < config.quiet_gate_breath_ms:
                margin = max(margin, config.quiet_gate_breath_db)
        return not level.too_quiet(loudness, margin)

    # ------------------------------------------------------------------------- turn policy

    def _start_pause(self) -> None:
        self._end_pause()
        # The Paused frame just pushed starts a speculative transcription.
        expects = self._tutor_asked and self._lesson is not None and self._lesson.expects_answer()
        self._evidence = Evidence(tutor_asked=self._tutor_asked, awaiting_transcript=True, expects_answer=expects)
        if self._turn_model is not None and self._config.adaptive:
            self._evidence.awaiting_completion = True
            self._score_due = True
            if self._detector.silence_ms >= self._config.completion_silence_ms:
                self._start_scoring()
        self._apply_policy()

    def _start_scoring(self) -> None:
        self._score_due = False
        audio = self._utterance_audio()
        self._scoring = asyncio.get_running_loop().create_task(self._score(self._pause, audio))

    def _end_pause(self) -> None:
        self._pause += 1
        self._evidence = None
        self._score_due = False
        self._thinking_sent = self._prompted = False
        self._detector.end_silence_ms = self._config.end_of_turn_silence_ms

    async def _score(self, pause: int, audio: np.ndarray) -> None:
        assert self._turn_model is not None
        try:
            # It decides when a waiting student is answered: as urgent as the answer itself.
            with work_scope(Priority(Urgency.NOW)):
                completion = await self._turn_model.completion(audio)
        except EngineError as exc:
            log.warning("turn model failed; this pause is judged without it: %s", exc)
            completion = None
        if pause == self._pause and self._evidence is not None:
            self._evidence.completion = completion
            self._evidence.awaiting_completion = False

    def _apply_policy(self) -> None:
        """Let the policy set the silence that ends the turn, and tell the client what it does."""
        assert self._evidence is not None
        decision = self._policy.decide(self._evidence)
        detector = self._detector
        detector.end_silence_ms = decision.commit_at_ms
        listening = self._turns.listening
        if listening is None:
            return
        if decision.thinking and not self._thinking_sent:
            self._thinking_sent = True
            self.push(TurnThinking(listening.id, decision.prompt_at_ms or decision.commit_at_ms))
        prompt_at = decision.prompt_at_ms
        if prompt_at is not None and not self._prompted and detector.silence_ms >= prompt_at:
            self._prompted = True
            self.push(TurnPrompt(listening.id, self._config.patience_prompt))

    def _on_speech_start(self) -> None:
        carry = self._turns.continue_last(self._first_frame, self._config.frame_ms)
        if carry is not None:
            self._join(carry)
            listening = carry.listening
        else:
            self.push(Interrupt(InterruptReason.BARGE_IN))
            listening = self._turns.new_listening()
        self._turns.listening = listening
        self.push(SpeechStarted(listening.id, self._detector.speech_start_frame * self._config.frame_ms))

    def _join(self, carry: Carry) -> None:
        """The student went on after a pause: the new speech joins the last turn's audio, gap
        included, so the transcript holds the whole sentence."""
        gap_frames = self._first_frame - carry.end_frame
        self._utterance = bytearray(carry.audio) + bytes(gap_frames * self._frame_bytes) + self._utterance
        self._first_frame = carry.first_frame

    def _on_end_of_turn(self, *, continuable: bool = True) -> None:
        held = self._thinking_sent
        self._end_pause()
        listening, self._turns.listening = self._turns.listening, None
        if listening is None:
            return
        detector = self._detector
        self.push(SpeechStopped(listening.id, detector.last_voiced_end * self._config.frame_ms))
        self.push(
            EndOfTurn(
                listening,
                self._utterance_audio(),
                self._arrival_of(detector.last_voiced_end),
                self._clock(),
                held=held,
            )
        )
        # Kept until the reply is heard: if the student goes on before that, the turn continues.
        # Not a turn cut at the length limit: joined to more speech it would be over the limit at
        # once, and cut again at every breath, each time transcribed whole.
        if continuable:
            self._turns.carry = Carry(listening, bytes(self._utterance), self._first_frame, detector.frames_seen)
        self._utterance = bytearray()
        # webrtcvad adapts its models of speech and noise to everything it hears. Over a session
        # they drift until a sentence's quiet tail and the room's noise read as speech: on 161 dev
        # clips played in one stream the end of speech was heard a median 183 ms late (a fresh
        # detector per turn: 65 ms), and 80 of 130 thinking pauses of 1.2-3 s never read as 600 ms
        # of silence (30). So each turn is heard by a detector that knows only what came after the
        # last one.
        self._vad = self._vad.new_stream()

    def _utterance_audio(self) -> np.ndarray:
        frame_ms = self._config.frame_ms
        end_frame = self._detector.last_voiced_end + self._config.tail_ms // frame_ms
        n_frames = max(0, end_frame - self._first_frame)
        return pcm16_to_float(bytes(self._utterance[: n_frames * self._frame_bytes]))

    def _maybe_partial(self) -> None:
        listening = self._turns.listening
        interval = self._config.partial_interval_ms
        # Only while the student is voicing: once silence begins the turn may be ending, and a
        # caption started now would hold a core the final transcript and the turn model need
        # (measured: a partial begun 70 ms into the end-of-turn silence delayed both by ~200 ms).
        if not interval or listening is None or self._detector.silence_ms or not self._partial_ready():
            return
        frames_since = self._detector.frames_seen - self._last_partial_frame
        if frames_since * self._config.frame_ms < interval:
            return
        self._last_partial_frame = self._detector.frames_seen
        recent = self._utterance[-PARTIAL_WINDOW_S * PIPELINE_SAMPLE_RATE * 2 :]
        self.push(PartialAudio(listening, pcm16_to_float(bytes(recent)), len(recent) == len(self._utterance)))

    async def stop(self) -> None:
        if self._scoring is not None:
            self._scoring.cancel()
        await super().stop()

    def _arrival_of(self, frame_index: int) -> float:
        for index, arrived in reversed(self._frame_times):
            if index <= frame_index:
                return arrived
        return self._frame_times[0][1] if self._frame_times else self._clock()

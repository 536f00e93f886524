"""Reply: the agent answers a transcript. Builds the prompt from the persona and what the student
heard before, streams the language model, and cuts its text into speakable pieces (the first one
short, so speech starts early). Also answers "repeat that" and reads prefill requests.

The safety layer (`pipelines.safety`) is called at marked points: the student's words are
neutralised and screened before the model (a redirect is answered with the persona's line and the
model is never asked), and each piece is screened before it becomes a `Sentence` or a caption.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial

from models.base import EngineError, GenerationRequest, LanguageModel, call_scope
from models.scheduling import Priority, Urgency, work_scope
from pipelines.agent import TutorAgent
from pipelines.allowance import CAP_REACHED, end_at_cap
from pipelines.chunker import SentenceChunker
from pipelines.control import (
    AttemptEnded,
    Commit,
    Mark,
    Out,
    PrefillRequest,
    ReplyDone,
    Sentence,
    Transcript,
    Usage,
)
from pipelines.drafting import (
    BASE_TEMPERATURE,
    REDRAW_TEMPERATURE_STEP,
    REDRAWS,
    Outcome,
    compose,
    reply_seed,
)
from pipelines.frames import (
    DataFrame,
    ErrorCode,
    PipelineError,
    RepeatLast,
    ReplyTextDelta,
    SafetyAction,
    SafetyDirection,
    SystemFrame,
    TranscriptFinal,
    TurnStatus,
    UsageKind,
)
from pipelines.processor import Stage
from pipelines.safety import neutralise
from pipelines.safety.guard import ReplyGuard, record
from pipelines.turn import Attempt, Turns

log = logging.getLogger(__name__)

class ReplyStage(Stage):
    name = "reply"

    def __init__(
        self,
        llm: LanguageModel,
        agent: TutorAgent,
        turns: Turns,
        clock: Callable[[], float],
        *,
        speculative: bool,
    ) -> None:
        super().__init__()
        self._llm = llm
        self.agent = agent
        self._turns = turns
        self._clock = clock
        # Off: a transcript found in a pause waits for the end of the turn before it is answered.
        self._speculative = speculative
        self._waiting: dict[Attempt, Transcript] = {}
        self._guard = ReplyGuard()

    def last_answer(self) -> str:
        return next((e.assistant for e in reversed(self.agent.history) if e.assistant), "")

    def on_system(self, frame: SystemFrame) -> None:
        if isinstance(frame, Commit) and (waiting := self._waiting.pop(frame.attempt, None)) is not None:
            self._begin(waiting.attempt)
        elif isinstance(frame, AttemptEnded):
            self._waiting.pop(frame.attempt, None)
            if frame.attempt.user_text:
                self.agent.remember(self._guard.remembered(frame.attempt), frame.heard)

    async def process(self, frame: DataFrame) -> None:
        if isinstance(frame, Transcript):
            self._on_transcript(frame)
        elif isinstance(frame, RepeatLast):
            self._repeat(frame)
        elif isinstance(frame, PrefillRequest):
            asyncio.get_running_loop().create_task(self._prefill(frame))
        else:
            self.push(frame)

    def _on_transcript(self, frame: Transcript) -> None:
        attempt = frame.attempt
        if not attempt.live:
            return
        attempt.user_text = self._guard.admit(attempt, frame.text)  # safety: screened, then neutralised
        self.push(Out(attempt, TranscriptFinal(attempt.turn_id, attempt.user_text, frame.source)))
        if not attempt.user_text:
            self.push(ReplyDone(attempt, TurnStatus.NO_SPEECH))
        elif not self._speculative and not attempt.committed:
            self._waiting[attempt] = frame
        else:
            self._begin(attempt)

    def _begin(self, attempt: Attempt) -> None:
        attempt.reply_started = True
        # safety: screen the student's words; a redirect is spoken without asking the model.
        if (flag := self._guard.screen(attempt)) is not None:
            self.push(Out(attempt, flag))
        if (line := self._guard.redirect(attempt, self.agent.persona)) is not None:
            self._say(attempt, line)
            return
        attempt.track(asyncio.get_running_loop().create_task(self._think(attempt)))

    def _say(self, attempt: Attempt, text: str) -> None:
        """Speak a declared line as the reply, without the model (marks as if it answered at once)."""
        now = self._clock()
        for mark in ("llm_first_token", "first_sentence"):
            self.push(Mark(attempt, mark, now))
        attempt.generated = text
        chunker = SentenceChunker()
        for piece in [*chunker.push(text + " "), *chunker.flush()]:
            self.push(Out(attempt, ReplyTextDelta(attempt.turn_id, piece + " ")))
            self.push(Sentence(attempt, piece))
        self.push(ReplyDone(attempt, TurnStatus.COMPLETED))

    def _repeat(self, frame: RepeatLast) -> None:
        attempt = self._turns.new_attempt(turn_id=frame.turn_id, replay=frame.text)
        now = self._clock()
        for mark in ("speech_end", "end_of_turn", "transcript", "llm_first_token", "first_sentence"):
            self.push(Mark(attempt, mark, now))
        self._turns.commit(attempt)
        attempt.reply_started = True
        attempt.generated = frame.text
        chunker = SentenceChunker()
        for piece in [*chunker.push(frame.text + " "), *chunker.flush()]:
            self.push(Sentence(attempt, piece))
        self.push(ReplyDone(attempt, TurnStatus.COMPLETED))

    async def _think(self, attempt: Attempt) -> None:
        persona = self.agent.persona
        earlier = self.agent.earlier_replies()
        messages = self._guard.steer(attempt, self.agent.messages_for(attempt.user_text))  # safety
        control = attempt.call("llm")
        requests: list[GenerationRequest] = []
        emitted = 0
        attempt.generated = ""  # what is queued to be spoken, in spoken style (see Turns.complete)
        attempt.llm_priority = priority = Priority(attempt.priority.urgency, attempt.priority.since)
        screen = self._guard.output(messages)  # safety: every piece passes it first

        def queue(piece: str) -> bool:
            """Speak a piece; False once the reply must end (a blocked piece was replaced)."""
            nonlocal emitted
            checked = screen.check(piece)
            if checked.category is not None:  # blocked: the safe line is said instead, and the reply ends
                flag = record(attempt, checked.category, SafetyAction.REPLACE, SafetyDirection.OUTPUT)
                self.push(Out(attempt, flag))
            piece = checked.text
            if emitted == 0:
                self.push(Mark(attempt, "first_sentence", self._clock()))
            emitted += 1
            attempt.generated = f"{attempt.generated} {piece}".lstrip()
            # Captions carry only screened, spoken-style text: raw deltas never leave this stage.
            self.push(Out(attempt, ReplyTextDelta(attempt.turn_id, piece if emitted == 1 else f" {piece}")))
            self.push(Sentence(attempt, piece))
            # The first piece is what the student waits for; the rest can queue behind other
            # students' first pieces (it is needed only once this one has been spoken).
            priority.urgency = max(priority.urgency, Urgency.AHEAD)
            return screen.blocked is None

        try:
            with work_scope(priority), call_scope(control):
                for draw in range(REDRAWS + 1):
                    request = GenerationRequest(
                        messages=messages,
                        max_tokens=persona.max_reply_tokens,
                        # A redraw is a different draw, a little bolder, from the same prompt.
                        temperature=BASE_TEMPERATURE + REDRAW_TEMPERATURE_STEP * draw,
                        seed=reply_seed(attempt.turn_id, attempt.number, draw),
                        cancel=attempt.cancel,
                    )
                    requests.append(request)
                    sentences = persona.max_sentences
                    first_token = partial(self._mark, attempt, "llm_first_token") if draw == 0 else None
                    outcome = await compose(
                        self._llm, request, earlier, queue, max_sentences=sentences,
                        shorten=lambda: attempt.shorten, on_first_token=first_token,
                    )
                    if outcome is not Outcome.REPEATED or not attempt.live:
                        break
                    if emitted:  # part of it was already spoken: no redraw, just bring the student back in
                        queue(self.agent.re_engage(earlier))
                        break
                    log.info("turn %s: reply repeated an earlier one (draw %d)", attempt.turn_id, draw)
                else:
                    queue(self.agent.re_engage(earlier))
                if not emitted and attempt.live:  # the model said nothing at all: never silence
                    queue(self.agent.re_engage(earlier))
        except EngineError as exc:
            if exc.code == CAP_REACHED:
                end_at_cap(self.push, attempt)
                return
            log.error("turn %s failed in the language model: %s", attempt.turn_id, exc)
            self.push(Out(attempt, PipelineError(ErrorCode.ENGINE_ERROR, "The tutor could not answer this turn.", attempt.turn_id)))
            self.push(ReplyDone(attempt, TurnStatus.FAILED, apology=True))
            return
        finally:
            # Counted from what was really generated, a cancelled stream and a redraw included.
            engine = control.served_by or self._llm.info
            for kind, amount in (
                (UsageKind.LLM_PROMPT_TOKENS, sum(r.usage.prompt_tokens for r in requests)),
                (UsageKind.LLM_COMPLETION_TOKENS, sum(r.usage.completion_tokens for r in requests)),
            ):
                self.push(Usage(attempt.turn_id, attempt, kind, amount, engine))
        self.push(ReplyDone(attempt, TurnStatus.COMPLETED))

    def _mark(self, attempt: Attempt, name: str) -> None:
        self.push(Mark(attempt, name, self._clock()))

    async def _prefill(self, request: PrefillRequest) -> None:
        try:
            # Only on an idle model: a prefill step cannot be interrupted, and under load it would
            # hold the core other students' replies need.
            if not self._llm.busy:
                tokens = await self._llm.prefill(self.agent.messages_for(neutralise(request.text)))
                usage = Usage(request.listening.id, None, UsageKind.LLM_PROMPT_TOKENS, tokens, self._llm.info, speculative=True)
                self.push(usage)
        except EngineError as exc:
            log.warning("prefill failed: %s", exc)
        finally:
            if not request.done.done():
                request.done.set_result(None)

"""Reply: the agent answers a transcript. Builds the prompt from the persona and what the student
heard before, streams the language model, and cuts its text into speakable pieces (the first one
short, so speech starts early). Also answers "repeat that" and reads prefill requests.

The safety layer (`pipelines.safety`) is called at marked points: the student's words are
neutralised and screened before the model (a redirect is answered with the persona's line and the
model is never asked), and each piece is screened before it becomes a `Sentence` or a caption.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable
from functools import partial

from models.base import ChatMessage, EngineError, GenerationRequest, LanguageModel, call_scope
from models.scheduling import Priority, Urgency, work_scope
from pipelines.agent import TutorAgent
from pipelines.allowance import CAP_REACHED, end_at_cap
from pipelines.chunker import spoken_pieces
from pipelines.drafting import ENDS_SENTENCE as _ENDS_SENTENCE
from pipelines.control import (
    AttemptEnded,
    Commit,
    Mark,
    ModelSetAside,
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
    SafetyCategory,
    SafetyDirection,
    SystemFrame,
    TranscriptFinal,
    TurnStatus,
    UsageKind,
)
from pipelines.pedagogy import Plan, Teacher
from pipelines.pedagogy.checks import check, tidy
from pipelines.pedagogy.planner import continue_sentence
from pipelines.processor import Stage
from pipelines.spoken import split_sentences
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
        lesson_plans: bool = True,
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
        # The teaching plan of each turn; the lesson moves on only once its reply was heard.
        self.teacher = Teacher(agent.persona) if lesson_plans else None
        self._plans: weakref.WeakKeyDictionary[Attempt, Plan] = weakref.WeakKeyDictionary()

    def last_answer(self) -> str:
        return next((e.assistant for e in reversed(self.agent.history) if e.assistant), "")

    def on_system(self, frame: SystemFrame) -> None:
        if isinstance(frame, Commit) and (waiting := self._waiting.pop(frame.attempt, None)) is not None:
            self._begin(waiting.attempt)
        elif isinstance(frame, AttemptEnded):
            self._waiting.pop(frame.attempt, None)
            if frame.attempt.user_text:
                self.agent.remember(self._guard.remembered(frame.attempt), frame.heard)
            plan = self._plans.pop(frame.attempt, None)
            if plan is not None and self.teacher is not None and frame.heard.strip():
                self.teacher.commit(plan)

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
        if not any(ch.isalnum() for ch in attempt.user_text):
            # "" or a lone "." (Whisper's reading of a breath or of hiss): nothing to answer.
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
        plan = None
        if self.teacher is not None:
            no_tools = any(f.category is SafetyCategory.FALSE_ACTION for f in attempt.safety)
            plan = self.teacher.plan(attempt.user_text, self.agent.earlier_replies(), no_tools=no_tools)
            self._plans[attempt] = plan
            log.debug("turn %s: teaching move %s", attempt.turn_id, plan.move)
            if not plan.model:  # the move is made in code: checked sums, vetted lines
                self._say(attempt, " ".join(part for part in (plan.lead, plan.close) if part))
                return
        attempt.track(asyncio.get_running_loop().create_task(self._think(attempt, plan)))

    def expects_answer(self) -> bool:
        """Whether the lesson waits on an answer it can judge (a step of a sum, a card's question)."""
        return self.teacher is not None and self.teacher.expects_answer()

    def hears_right_answer(self, text: str) -> bool:
        """Whether `text` is the right answer to the lesson's pending question (turn-taking evidence)."""
        return self.teacher is not None and self.teacher.hears_right_answer(text)

    def _say(self, attempt: Attempt, text: str) -> None:
        """Speak a declared line as the reply, without the model (marks as if it answered at once)."""
        now = self._clock()
        for mark in ("llm_first_token", "first_sentence"):
            self.push(Mark(attempt, mark, now))
        attempt.generated = text
        for piece in spoken_pieces(text):
            self.push(Out(attempt, ReplyTextDelta(attempt.turn_id, piece + " ")))
            self.push(Sentence(attempt, piece, vetted=True))
        self.push(ReplyDone(attempt, TurnStatus.COMPLETED))

    def _repeat(self, frame: RepeatLast) -> None:
        attempt = self._turns.new_attempt(turn_id=frame.turn_id, replay=frame.text)
        now = self._clock()
        for mark in ("speech_end", "answer_due", "end_of_turn", "transcript", "llm_first_token", "first_sentence"):
            self.push(Mark(attempt, mark, now))
        self._turns.commit(attempt)
        attempt.reply_started = True
        attempt.generated = frame.text
        for piece in spoken_pieces(frame.text):
            self.push(Sentence(attempt, piece))
        self.push(ReplyDone(attempt, TurnStatus.COMPLETED))

    async def _think(self, attempt: Attempt, plan: Plan | None = None) -> None:
        persona = self.agent.persona
        earlier = self.agent.earlier_replies()
        messages = self._guard.steer(attempt, self.agent.messages_for(attempt.user_text))  # safety
        # Screened against the instructions, not the vetted fact it is asked to phrase.
        screen = self._guard.output(messages)  # safety: every piece passes it first
        if plan is not None and plan.note:
            # Phrasing a vetted fact needs no history: the persona's prompt (already read into
            # every context) plus the fact and the question, so little is new to read, and a small
            # model is not led astray by earlier turns. (Measured: a small model follows the fact
            # far better in the first system message than in a later one or in the user's turn.)
            messages = [ChatMessage("system", f"{messages[0].content}\n\n{plan.note}"), messages[-1]]
        control = attempt.call("llm")
        requests: list[GenerationRequest] = []
        emitted = 0
        attempt.generated = ""  # what is queued to be spoken, in spoken style (see Turns.complete)
        attempt.llm_priority = priority = Priority(attempt.priority.urgency, attempt.priority.since)

        def queue(piece: str, *, vetted: bool = False) -> bool:
            """Speak a piece; False once the reply must end (a blocked piece was replaced).
            `vetted`: a line of the plan, not the model's words."""
            nonlocal emitted
            checked = screen.check(piece)
            if checked.category is not None:  # blocked: the safe line is said instead, and the reply ends
                flag = record(attempt, checked.category, SafetyAction.REPLACE, SafetyDirection.OUTPUT)
                self.push(Out(attempt, flag))
                vetted = True
            piece = checked.text
            after_lead = plan is not None and plan.lead and attempt.generated == plan.lead
            if after_lead and plan.lead.endswith((",", ":")):
                piece = continue_sentence(piece)  # "Well," then "the Romans ...", not "The"
            if emitted == 0:
                self.push(Mark(attempt, "first_sentence", self._clock()))
            emitted += 1
            attempt.generated = f"{attempt.generated} {piece}".lstrip()
            # Captions carry only screened, spoken-style text: raw deltas never leave this stage.
            self.push(Out(attempt, ReplyTextDelta(attempt.turn_id, piece if emitted == 1 else f" {piece}")))
            self.push(Sentence(attempt, piece, vetted=vetted))
            # The first piece is what the student waits for; the rest can queue behind other
            # students' first pieces (it is needed only once this one has been spoken).
            priority.urgency = max(priority.urgency, Urgency.AHEAD)
            return screen.blocked is None

        checked = _CheckedSentences(plan, queue, attempt.turn_id) if plan is not None else None
        abandoned: asyncio.Task[Outcome] | None = None  # a draft past its deadline, being stopped
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (plan.deadline_s or 0.0) if plan is not None else 0.0
        ended = False  # the safety layer ended the reply
        if plan is not None and plan.lead:
            ended = not queue(plan.lead, vetted=True)  # at once: the student hears the tutor while the model writes

        try:
            with work_scope(priority), call_scope(control):
                for draw in range(REDRAWS + 1):
                    if ended:
                        break
                    request = GenerationRequest(
                        messages=messages,
                        max_tokens=persona.max_reply_tokens,
                        # A redraw is a different draw, a little bolder, from the same prompt.
                        temperature=BASE_TEMPERATURE + REDRAW_TEMPERATURE_STEP * draw,
                        seed=reply_seed(attempt.turn_id, attempt.number, draw),
                        cancel=attempt.cancel,
                    )
                    requests.append(request)
                    # With a plan the model writes one checked sentence; the plan says the rest.
                    sentences = persona.max_sentences if checked is None else 1
                    first_token = partial(self._mark, attempt, "llm_first_token") if draw == 0 else None
                    drafting = compose(
                        self._llm, request, earlier, queue if checked is None else checked.offer,
                        max_sentences=sentences, shorten=lambda: attempt.shorten, on_first_token=first_token,
                    )
                    if plan is None or plan.deadline_s is None:
                        outcome = await drafting
                    else:
                        # The model's sentence has a deadline (the plan's lead is playing meanwhile):
                        # missed, the vetted fallback is said at once, so no silence opens up. The
                        # generation is stopped, but not waited for here: a step of the model
                        # cannot be interrupted, and the student should not wait for it.
                        task = loop.create_task(drafting)
                        done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
                        if not done:
                            request.cancel.set()
                            task.cancel()
                            abandoned = task
                            checked.close()
                            self.push(ModelSetAside(attempt))
                            log.info("turn %s: the model's sentence missed its %.1f s deadline; the plan's "
                                     "fallback is said", attempt.turn_id, plan.deadline_s)
                            break
                        outcome = task.result()
                    if checked is not None:
                        stopped = outcome is Outcome.REPEATED or request.usage.completion_tokens >= request.max_tokens
                        ended = checked.finish(whole=not stopped)
                    if outcome is not Outcome.REPEATED or not attempt.live:
                        break
                    if checked is not None and checked.spoken:
                        break  # what was said passed; the plan's question follows
                    if emitted and checked is None:  # part of it was already spoken: no redraw, just bring the student back in
                        queue(self.agent.re_engage(earlier))
                        break
                    log.info("turn %s: reply repeated an earlier one (draw %d)", attempt.turn_id, draw)
                else:
                    if checked is None:
                        queue(self.agent.re_engage(earlier))
                if plan is not None and checked is not None and not ended and attempt.live:
                    if not checked.spoken and plan.fallback:
                        # The vetted fact or hint, in place of the model's, often after a missed
                        # deadline while the lead's audio runs out: its first words are synthesised
                        # alone so the silence after the lead stays short (a whole fact took up to
                        # 0.9 s to synthesise under load).
                        for piece in spoken_pieces(plan.fallback):
                            if ended := not queue(piece, vetted=True):
                                break
                    if not ended and plan.close and "?" not in attempt.generated:
                        queue(plan.close, vetted=True)
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
            if abandoned is not None:  # its tokens are counted once it has really stopped
                with contextlib.suppress(asyncio.CancelledError, EngineError):
                    await abandoned
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
                # Nice to have: never ahead of a reply a student is waiting for (a step already
                # running cannot be stopped, so it must not take the cores first).
                with work_scope(Priority(Urgency.OPTIONAL)):
                    tokens = await self._llm.prefill(self.agent.messages_for(neutralise(request.text)))
                usage = Usage(request.listening.id, None, UsageKind.LLM_PROMPT_TOKENS, tokens, self._llm.info, speculative=True)
                self.push(usage)
        except EngineError as exc:
            log.warning("prefill failed: %s", exc)
        finally:
            if not request.done.done():
                request.done.set_result(None)


class _CheckedSentences:
    """Holds the model's pieces until their sentence is whole, checks the sentence against the
    teaching plan (`pipelines.pedagogy.checks`) and only then speaks it. A stock opener ("A great
    question.") is dropped without counting; so is a question of the model's when the plan ends
    with its own. A sentence that fails ends the model's part: the plan's fallback is said."""

    def __init__(self, plan: Plan, speak: Callable[[str], bool], turn_id: str) -> None:
        self._plan, self._speak, self._turn_id = plan, speak, turn_id
        self._held: list[str] = []
        self.spoken = 0
        self.failed = False
        self._ended = False
        self._ended_model = False

    def close(self) -> None:
        """Past the deadline: nothing more of the model's is said."""
        self._held.clear()
        self._ended_model = True

    def offer(self, piece: str) -> bool | None:
        """True: go on; False: the model's part is over; None: dropped, not counted."""
        if self._ended_model:
            return False
        self._held.append(piece)
        if not _ENDS_SENTENCE.search(piece):
            return True
        return self._judge()

    def finish(self, *, whole: bool = True) -> bool:
        """The model's stream ended. When the model ended it itself (`whole`), a last sentence
        without its full stop is judged too; when the draw was stopped (a repeat of an earlier
        reply, the token limit) what is held is a fragment ("I see you're"), never said.
        True when the safety layer ended the reply."""
        if whole and self._held and not self.failed and not self._ended:
            self._held[-1] = self._held[-1].rstrip(",;: ") + "."
            self._judge()
        self._held.clear()
        return self._ended

    def _judge(self) -> bool | None:
        text, self._held = " ".join(self._held), []
        # A piece can hold more than one sentence ("No, no. The story of ..."): each is judged,
        # and only the first that passes is said.
        for sentence in map(tidy, split_sentences(text)):
            if not sentence or (self._plan.close and sentence.rstrip("\"')] ").endswith("?")):
                continue
            if (failed := check(sentence, self._plan)) is not None:
                log.info("turn %s: a model sentence failed the %s check; the plan's fallback is said", self._turn_id, failed)
                self.failed = True
                return False
            self.spoken += 1
            if not self._speak(sentence):
                self._ended = True
            return False  # one checked sentence is the model's part
        return None
